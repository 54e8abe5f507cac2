//! `resonance init`: a commented config with fresh credentials, and the
//! lines a Laravel app needs to talk to it.

use rand::Rng;
use rand::distr::Alphanumeric;

/// Fresh credentials: a numeric id (SDKs require digits), a random key and
/// a random secret.
pub fn generate_credentials() -> (String, String, String) {
    let mut rng = rand::rng();
    let id = rng.random_range(100_000..1_000_000u32).to_string();
    let mut token = |n: usize| -> String {
        (&mut rng)
            .sample_iter(&Alphanumeric)
            .take(n)
            .map(char::from)
            .collect::<String>()
            .to_lowercase()
    };
    let key = token(20);
    let secret = token(32);
    (id, key, secret)
}

/// The config file `init` writes.
pub fn config_file(id: &str, key: &str, secret: &str, host: &str, port: u16) -> String {
    format!(
        r#"# Resonance configuration. Every setting can also be given as an environment
# variable (RESONANCE_*; RESONANCE_APP_* override the first app) — see README.md.

[server]
host = "{host}"              # address to listen on; 0.0.0.0 for all interfaces
port = {port}                     # WebSocket (/app/KEY) and HTTP API (/apps/ID/...) share it
shutdown_grace = 10             # seconds to let clients go on SIGTERM/SIGINT
pong_timeout = 30               # seconds to wait for a pong before closing with 4201
write_timeout = 10              # seconds a write to one client may take
max_message_bytes = 65536       # largest WebSocket message accepted from a client
outbox_limit = 1024             # frames queued per client before it is dropped (close 4100)
max_request_bytes = 1048576     # largest HTTP API request body
log = "info"                    # log filter: error, warn, info, debug, trace

# One [[apps]] table per app; several apps can share one server.
[[apps]]
id = "{id}"
key = "{key}"
secret = "{secret}"
client_events = true            # relay whispers (client-* events) on private/presence channels
client_event_rate = 10          # client events per second per connection (over: error 4301)
max_connections = 0             # 0 = unlimited (over: close 4004)
max_event_bytes = 10240         # largest event data (HTTP API: 413)
max_channels_per_event = 100
max_events_per_batch = 10
max_presence_members = 100
max_presence_member_bytes = 1024
allowed_origins = ["*"]         # e.g. ["https://app.example.com", "https://*.example.com"] (others: 4009)
activity_timeout = 120          # seconds of silence before the server pings a client
subscription_count_events = false  # send pusher_internal:subscription_count on changes
# client_event_hook = "http://127.0.0.1:8000/socket/whisper"  # vet client-* events first

# WebSocket routes your app handles over HTTP (README: Handlers (any language)).
# [[routes]]
# path = "/chat-rooms/{{id}}"
# handler = "http://127.0.0.1:8000/socket/chat"
# rooms = ["chat-rooms.{{id}}"]
"#
    )
}

/// The `.env` lines and Echo snippet for a Laravel app.
pub fn laravel_instructions(id: &str, key: &str, secret: &str, host: &str, port: u16) -> String {
    let host = if host == "0.0.0.0" { "127.0.0.1" } else { host };
    format!(
        r#"# --- Laravel .env (reverb broadcaster) ---
BROADCAST_CONNECTION=reverb
REVERB_APP_ID={id}
REVERB_APP_KEY={key}
REVERB_APP_SECRET={secret}
REVERB_HOST={host}
REVERB_PORT={port}
REVERB_SCHEME=http

VITE_REVERB_APP_KEY="${{REVERB_APP_KEY}}"
VITE_REVERB_HOST="${{REVERB_HOST}}"
VITE_REVERB_PORT="${{REVERB_PORT}}"
VITE_REVERB_SCHEME="${{REVERB_SCHEME}}"

# --- or with the pusher broadcaster ---
# BROADCAST_CONNECTION=pusher
# PUSHER_APP_ID={id}
# PUSHER_APP_KEY={key}
# PUSHER_APP_SECRET={secret}
# PUSHER_HOST={host}
# PUSHER_PORT={port}
# PUSHER_SCHEME=http
# PUSHER_APP_CLUSTER=mt1
# VITE_PUSHER_APP_KEY="${{PUSHER_APP_KEY}}"
# VITE_PUSHER_HOST="${{PUSHER_HOST}}"
# VITE_PUSHER_PORT="${{PUSHER_PORT}}"
# VITE_PUSHER_SCHEME="${{PUSHER_SCHEME}}"
# VITE_PUSHER_APP_CLUSTER="${{PUSHER_APP_CLUSTER}}"

// --- resources/js/echo.js ---
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
window.Pusher = Pusher;
window.Echo = new Echo({{
    broadcaster: 'reverb',
    key: import.meta.env.VITE_REVERB_APP_KEY,
    wsHost: import.meta.env.VITE_REVERB_HOST,
    wsPort: import.meta.env.VITE_REVERB_PORT ?? 80,
    wssPort: import.meta.env.VITE_REVERB_PORT ?? 443,
    forceTLS: (import.meta.env.VITE_REVERB_SCHEME ?? 'https') === 'https',
    enabledTransports: ['ws', 'wss'],
}});
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn generated_config_loads() {
        let (id, key, secret) = generate_credentials();
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(key.len(), 20);
        assert_eq!(secret.len(), 32);
        let config =
            Config::from_toml(&config_file(&id, &key, &secret, "127.0.0.1", 6001)).unwrap();
        config.validate().unwrap();
        assert_eq!(config.apps[0].key, key);
        assert_eq!(
            config,
            Config {
                apps: vec![crate::core::app::AppConfig {
                    id,
                    key,
                    secret,
                    ..Default::default()
                }],
                ..Config::default()
            },
            "the commented file spells out the defaults"
        );
    }
}
