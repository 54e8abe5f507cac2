//! The protocol-agnostic core: apps, channels, presence, users, connections
//! and fan-out. Nothing here knows a wire format; front-ends register a
//! [`connection::Wire`] that turns an [`event::Event`] into bytes.

pub mod adapter;
pub mod app;
pub mod channel;
pub mod connection;
pub mod event;
pub mod hub;
pub mod interest;
pub mod node;
pub mod rules;
pub mod stats;
