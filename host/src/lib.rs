//! ping-host: a Spin-compatible runtime for the ping component.
//!
//! Modules, one job each: [`manifest`] reads `spin.toml` into the [`app`]
//! model; [`variables`] resolves Spin variables; [`routing`] matches paths;
//! [`outbound`] decides which hosts a component may reach; [`redis`] and
//! [`outbound_http`] implement the guest's network access; [`engine`] owns
//! wasmtime; [`server`] serves HTTP.

pub mod app;
pub mod bindings;
pub mod engine;
pub mod manifest;
pub mod metrics;
pub mod oci;
pub mod outbound;
pub mod outbound_http;
pub mod redis;
pub mod routing;
pub mod server;
pub mod state;
pub mod variables;
