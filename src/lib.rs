//! Resonance: a real-time WebSocket server for Laravel Echo, pusher-js and
//! any backend with a Pusher SDK.
//!
//! The layout, from the bottom up (dependencies point down, toward the core):
//!
//! - [`core`] — protocol-agnostic state: apps ([`core::app`]), channel names
//!   ([`core::channel`]), connections and their bounded outboxes
//!   ([`core::connection`]), events encoded once per wire format
//!   ([`core::event`]), the per-app hub with presence and fan-out
//!   ([`core::hub`]), the node ([`core::node`]) and the cross-node
//!   [`core::adapter`] seam.
//! - [`signing`] — Pusher's HMAC signatures, shared by auth and the API.
//! - [`ws`] — the WebSocket seam: the handshake, our lean RFC 6455
//!   connection ([`ws::lean`], used by the Pusher front-end) and the
//!   `tokio-websockets` stream; the only module that names a WebSocket crate.
//! - [`pusher`] — the Pusher protocol front-end: wire format and sessions.
//! - [`http_api`] — the Pusher HTTP API (trigger, batch, queries, terminate).
//! - [`custom`] — custom WebSocket routes and the library API: path
//!   patterns, callback and task handlers, rooms as hub channels, user
//!   authenticators, plain HTTP routes; `Server::builder` starts there.
//! - [`server`] — accept loop, routing, readiness and graceful shutdown.
//! - [`config`], [`metrics`], [`init`] — operations: settings from file, env
//!   and flags; Prometheus text; `resonance init`.

pub mod adapter;
pub mod auth_endpoint;
pub mod config;
pub mod core;
pub mod custom;
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
pub mod ws;
