//! Host bindings for the Spin interfaces ping-host provides, generated from the
//! WIT in `host/wit/` (which mirrors Spin's published `fermyon:spin@2.0.0`).
//! WASI and `wasi:http` come from wasmtime-wasi and wasmtime-wasi-http.

wasmtime::component::bindgen!({
    path: "wit",
    world: "ping:host/spin-imports",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/redis.connection": crate::redis::RedisConnection,
    },
});

pub use fermyon::spin::{redis, variables};
