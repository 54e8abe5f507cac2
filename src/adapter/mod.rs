//! Adapter implementations (the trait lives in [`crate::core::adapter`]):
//! the local one is in the core; [`redis`] makes several nodes one server.

pub mod redis;
