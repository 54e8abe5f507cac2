//! Ingress: events entering from outside the WebSocket and HTTP paths.
//! Today that is Laravel's `redis` broadcaster ([`redis`]).

pub mod redis;
