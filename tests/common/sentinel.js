// Negative assertions without fixed sleeps (shared by the Node suites; Node built-ins only).
//
// "X was not delivered" is proved by sending a sentinel through the same path after the action
// under test (same channel, same publisher / front-end / node) and waiting for it: whatever the
// action could have caused is ordered before it. The few waits that are inherently time-based
// (client-side reconnect timers, server timeouts) are named here or next to their server setting.

/**
 * How long to watch a pusher-js client after a 4000-4099 close to see that it does NOT come back:
 * pusher-js reconnects after 1 s for 4100-4199 and at once for 4200-4299, so a wrongly chosen
 * close code shows up within this time. Client-side timing: there is no server path to send a
 * sentinel on.
 */
export const PUSHERJS_RETRY_GRACE_MS = 1500;

