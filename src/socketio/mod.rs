//! The Socket.IO front-end for Laravel Echo's `socket.io` connector
//! (socket.io-client 2.x as laravel-echo-server served it, and 4.x).
//!
//! Engine.IO (v3 and v4, long-polling and websocket, heartbeats, upgrades)
//! is engineioxide's work; [`protocol`] is the thin Socket.IO layer Echo
//! needs, and [`session`] maps Echo's events onto the same core hub as the
//! Pusher front-end, so both kinds of client share one channel space.

pub mod protocol;
pub mod session;

pub use session::{SocketIoFrontend, SocketIoService};
