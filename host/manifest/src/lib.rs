//! The Spin application model `ping-host` runs, apart from the runtime: the
//! manifest (`spin.toml`), variables and their templates, HTTP routes and
//! `allowed_outbound_hosts`. Everything here is pure parsing and matching of
//! untrusted input, kept free of wasmtime so that it can be fuzzed quickly
//! (see `fuzz/`).

pub mod allowed_hosts;
pub mod app;
pub mod manifest;
pub mod routing;
pub mod variables;
