//! Host bindings for the Spin interfaces ping-host provides, generated from the
//! WIT in `host/wit/` (which mirrors Spin's published `fermyon:spin@2.0.0`).
//! WASI and `wasi:http` come from wasmtime-wasi and wasmtime-wasi-http.
//!
//! A leaf: it knows no implementation. The `connection` resource is generated
//! as an opaque type and each host module maps it to its own state by the
//! resource's table index, as Spin's `spin-world` crate does. Each WIT `error`
//! is mapped once to a [`TrappableError`], so host methods return a plain
//! `Result<T, RedisError>` where `?` on a WIT error reaches the guest and
//! [`TrappableError::trap`] stops it.

use wasmtime_wasi::TrappableError;

wasmtime::component::bindgen!({
    path: "wit",
    world: "ping:host/spin-imports",
    imports: { default: async | trappable },
    trappable_error_type: {
        "fermyon:spin/redis.error" => RedisError,
        "fermyon:spin/variables.error" => VariablesError,
    },
});

pub use fermyon::spin::{redis, variables};

/// `fermyon:spin/redis@2.0.0`'s `error`, or a trap.
pub type RedisError = TrappableError<redis::Error>;

/// `fermyon:spin/variables@2.0.0`'s `error`, or a trap.
pub type VariablesError = TrappableError<variables::Error>;
