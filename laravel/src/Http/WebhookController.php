<?php

namespace Resonance\Laravel\Http;

use Illuminate\Contracts\Events\Dispatcher;
use Illuminate\Http\JsonResponse;
use Illuminate\Http\Request;
use Resonance\Laravel\Events\CacheMiss;
use Resonance\Laravel\Events\ChannelOccupied;
use Resonance\Laravel\Events\ChannelVacated;
use Resonance\Laravel\Events\ClientEventReceived;
use Resonance\Laravel\Events\MemberAdded;
use Resonance\Laravel\Events\MemberRemoved;
use Resonance\Laravel\Events\SubscriptionCount;
use Resonance\Laravel\Events\WebhookReceived;
use Resonance\Laravel\Support\Signature;

/**
 * Pusher-format webhooks ({"time_ms":..,"events":[{"name":..,"channel":..},..]}, signed with
 * X-Pusher-Key / X-Pusher-Signature) dispatched as Laravel events.
 */
class WebhookController
{
    public const EVENTS = [
        'channel_occupied' => ChannelOccupied::class,
        'channel_vacated' => ChannelVacated::class,
        'member_added' => MemberAdded::class,
        'member_removed' => MemberRemoved::class,
        'client_event' => ClientEventReceived::class,
        'cache_miss' => CacheMiss::class,
        'subscription_count' => SubscriptionCount::class,
    ];

    /** Most events one webhook may carry. */
    public const MAX_EVENTS = 1000;

    public function __invoke(Request $request, Dispatcher $events): JsonResponse
    {
        $body = $request->getContent();
        $key = $request->header('X-Pusher-Key');
        if ($key !== null && ! hash_equals((string) config('resonance.key'), (string) $key)) {
            return new JsonResponse(['message' => 'X-Pusher-Key is not this app\'s key'], 401);
        }
        if (! Signature::verifyBody(config('resonance.secret'), $body, $request->header('X-Pusher-Signature'))) {
            return new JsonResponse(['message' => 'invalid or missing X-Pusher-Signature'], 401);
        }
        $hook = json_decode($body, true);
        if (! is_array($hook) || ! isset($hook['events']) || ! is_array($hook['events'])) {
            return new JsonResponse(['message' => 'not a webhook: {"time_ms":..,"events":[..]} expected'], 400);
        }
        if (count($hook['events']) > self::MAX_EVENTS) {
            return new JsonResponse(['message' => 'too many events in one webhook (at most '.self::MAX_EVENTS.')'], 413);
        }
        $timeMs = isset($hook['time_ms']) && is_numeric($hook['time_ms']) ? (int) $hook['time_ms'] : null;
        $dispatched = 0;
        foreach ($hook['events'] as $event) {
            if (! is_array($event) || ! isset($event['name']) || ! is_string($event['name'])) {
                continue;
            }
            $events->dispatch(new WebhookReceived($event, $timeMs));
            if (isset(self::EVENTS[$event['name']])) {
                $class = self::EVENTS[$event['name']];
                $events->dispatch(new $class($event, $timeMs));
            }
            $dispatched++;
        }

        return new JsonResponse(['dispatched' => $dispatched]);
    }
}
