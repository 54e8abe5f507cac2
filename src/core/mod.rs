//! The protocol-agnostic core: apps, channels, presence, users, connections
//! and fan-out. Nothing here knows a wire format; front-ends register a
//! [`connection::Wire`] that turns an [`event::Event`] into bytes.

pub mod adapter;
pub mod app;
pub mod channel;
pub mod connection;
pub mod event;
pub mod happenings;
pub mod hub;
pub mod interest;
pub mod live_app;
pub mod node;
pub mod registry;
pub mod relay;
pub mod roster;
pub mod rules;
pub mod settle;
pub mod stats;
pub mod webhook_target;
