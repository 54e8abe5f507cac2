//! Resonance: a real-time WebSocket server for Laravel Echo, pusher-js and
//! any backend with a Pusher SDK.
//!
//! The layout, from the bottom up (dependencies point down, toward the core):
//!
//! - [`core`] — protocol-agnostic state: apps ([`core::app`], with settings
//!   a reload can replace: [`core::live_app`]; the app set swapped whole:
//!   [`core::registry`]; every connection of an app: [`core::roster`]), channel names
//!   ([`core::channel`]), connections, their wire variants and bounded
//!   outboxes ([`core::connection`]), events encoded once per wire
//!   ([`core::event`]), the per-app hub with presence, fan-out and
//!   connection slots released on drop ([`core::hub`]), the rules every
//!   front-end shares ([`core::rules`]), per-app counters ([`core::stats`]),
//!   the node with its ordered fan-out lanes and tracked background tasks
//!   ([`core::node`]), the cross-node [`core::adapter`] seam (with
//!   interest-based routing's claims on a channel, [`core::interest`]) and
//!   the node-to-node [`core::relay`] link; the
//!   one stream of happenings (occupied/vacated, members, client events,
//!   connections; cluster-wide once or node-local) in
//!   [`core::happenings`], with departures held and settled by
//!   [`core::settle`].
//! - [`signing`] — Pusher's HMAC signatures, shared by auth and the API.
//! - [`limits`] — per-IP connection slots and token-bucket rate limits.
//! - [`ws`] — the WebSocket seam: the handshake, our lean RFC 6455
//!   connection ([`ws::lean`], used by the Pusher front-end and Socket.IO
//!   WebSocket clients, over plain TCP or the built-in TLS; [`ws::outbox`]
//!   writes a connection's outbox to it) and the `tokio-websockets`
//!   stream; the only module that names a WebSocket crate.
//! - Front-ends: [`pusher`] (the Pusher protocol: wire format, one session
//!   over a transport seam — the lean WebSocket or pusher-js's HTTP
//!   fallback transports, [`pusher::fallback`], forwarded between nodes),
//!   [`socketio`] (Echo's socket.io connector, Engine.IO 3 and 4: direct
//!   WebSocket clients on the lean connection, polling and upgrades on
//!   engineioxide), [`custom`] (custom WebSocket routes and the
//!   library API: path patterns, handlers, rooms as hub channels, user
//!   authenticators, plain HTTP routes; `Server::builder` starts there;
//!   [`custom::app_handlers`]: `[[routes]]` handled by the app over HTTP
//!   and the signed socket API).
//! - Ingress: [`http_api`] (the Pusher HTTP API and the
//!   laravel-echo-server-style API), [`ingress`] (Laravel's `redis`
//!   broadcaster over Redis pub/sub).
//! - Egress: [`auth_endpoint`] (asking the app's `/broadcasting/auth` with
//!   the user's cookies), [`webhooks`] (Pusher's webhooks, a subscriber of
//!   the happenings stream), [`app_call`] (signed JSON `POST`s to the app, for
//!   handler routes and the hook), [`client_event_hook`] (client events
//!   vetted by the app before they are relayed).
//! - Engines: [`adapter`] ([`adapter::cluster`], the cluster adapter
//!   behind [`core::adapter::Adapter`], over an [`adapter::broker`]: one
//!   Redis or Sentinel, a Redis Cluster (sharded pub/sub) or NATS
//!   (JetStream KV for state); [`adapter::routes`], the per-channel broker
//!   subscriptions of interest-based routing; [`adapter::broker::link`],
//!   the [`core::relay::Link`] over any broker).
//! - [`server`] — accept loop, per-connection limits, routing, readiness
//!   and graceful shutdown; [`tls`] — the rustls acceptor.
//! - Operations: [`config`] (defaults, file, `RESONANCE_*`, flags),
//!   [`echo_config`] (`--echo-config laravel-echo-server.json`), [`metrics`]
//!   (Prometheus text, optional token or own listener), [`init`]
//!   (`resonance init`), [`apps`] (the live app set: apps from a database,
//!   reloads of the config file, TLS certificate and log filter swaps, the
//!   `resonance apps` commands).
//!   (`resonance init`), [`dashboard`] (the live dashboard at
//!   `/dashboard`: page, login, live socket, debug console, test events),
//!   [`doctor`] (`resonance doctor`: config and environment checks).

pub mod adapter;
pub mod app_call;
pub mod apps;
pub mod auth_endpoint;
pub mod client_event_hook;
pub mod config;
pub mod core;
pub mod custom;
pub mod dashboard;
pub mod doctor;
pub mod echo_config;
pub mod http_api;
pub mod ingress;
pub mod init;
pub mod limits;
pub mod metrics;
pub mod pusher;
pub mod server;
pub mod signing;
pub mod socketio;
pub mod tls;
pub mod webhooks;
pub mod ws;
