//! The Pusher Channels protocol v7 front-end (pusher-js, Laravel Echo's
//! `pusher` and `reverb` connectors): wire format and per-connection session.

pub mod fallback;
pub mod protocol;
pub mod session;
pub mod signin;
