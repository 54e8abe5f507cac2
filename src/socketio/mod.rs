//! The Socket.IO front-end for Laravel Echo's `socket.io` connector
//! (socket.io-client 2.x as laravel-echo-server served it, and 4.x).
//!
//! [`protocol`] is the thin Socket.IO layer Echo needs, and [`session`]
//! maps Echo's events onto the same core hub as the Pusher front-end, so
//! both kinds of client share one channel space. The session is
//! transport-independent; two Engine.IO transports drive it:
//! [`lean`], our own for clients that open a WebSocket directly (v3 and
//! v4), and [`engine`], engineioxide for long-polling and the polling →
//! websocket upgrade.

pub mod engine;
pub mod lean;
pub mod protocol;
pub mod session;

pub use engine::SocketIoService;
pub use session::SocketIoFrontend;
