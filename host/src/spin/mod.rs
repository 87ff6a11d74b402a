//! The Spin interfaces ping-host gives guests on top of WASI 0.2 and 0.3, one
//! module each, laid out like Spin's factors: wiring (`add_to_linker`),
//! per-instance state with the host trait impls on it, and the allow-list
//! check. Each module serves both generations of its interface from one
//! implementation:
//!
//! - [`redis`], `fermyon:spin/redis@2.0.0` and `spin:redis/redis@3.0.0`;
//! - `variables`, `fermyon:spin/variables@2.0.0` and `spin:variables/variables@3.0.0`;
//! - `outbound_http`, `wasi:http` 0.2 `outgoing-handler` and 0.3 `client`,
//!   held to `allowed_outbound_hosts`;
//! - `bindings`, the generated traits and types, a leaf.

mod bindings;
pub(crate) mod outbound_http;
pub mod redis;
pub(crate) mod variables;
