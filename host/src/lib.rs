//! ping-host: a Spin-compatible runtime for the ping component.
//!
//! Modules, one job each: [`manifest`] reads `spin.toml` into the [`app`]
//! model; [`variables`] resolves Spin variables; [`routing`] matches paths;
//! [`outbound`] decides which hosts a component may reach (these five live in
//! the wasmtime-free `ping-manifest` crate, so they fuzz fast); [`redis`] and
//! [`outbound_http`] implement the guest's network access; [`engine`] owns
//! wasmtime; [`server`] serves HTTP; [`metrics`] counts it all.

pub use ping_manifest::{app, manifest, outbound, routing, variables};

pub mod bindings;
pub mod engine;
pub mod metrics;
pub mod oci;
pub mod outbound_http;
pub mod redis;
pub mod server;
pub mod state;
