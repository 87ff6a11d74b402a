//! ping-host: a Spin-compatible runtime for the ping component.
//!
//! Module map (dependencies point down the list; none points back up):
//!
//! - [`http`] serves the app: `http::server` (listen, accept, drain, shared
//!   with the metrics endpoint), Spin's request headers, the WASIp2 executor,
//!   admission and `http::Refusal`, every answer the runtime gives itself;
//! - [`engine`] owns wasmtime: configuration, the compilation cache, the epoch
//!   ticker, loading and linking components, and the only `new_store`;
//! - [`spin`] implements the Spin interfaces guests import, one module each
//!   (`redis`, `variables`, `outbound_http`), over leaf bindings;
//! - [`metrics`] keeps and encodes the runtime's metrics;
//! - [`oci`] pushes and pulls Spin OCI artifacts;
//! - the app model comes from the wasmtime-free `ping-manifest` crate:
//!   [`manifest`] reads `spin.toml` into an [`app`]; [`variables`] resolves
//!   Spin variables; [`routing`] matches paths; [`allowed_hosts`] decides which
//!   hosts a component may reach.
//!
//! The public surface is what the `ping-host` binary, `examples/` and the
//! tests use: [`http::HttpServer`] with its [`http::Settings`] and flag groups,
//! [`engine::Engine`] (for the instantiation benchmark), [`oci::push`] and
//! [`oci::pull`], and the app model. Everything else is crate-private.

pub use ping_manifest::{allowed_hosts, app, manifest, routing, variables};

mod cli;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod oci;
pub mod spin;
