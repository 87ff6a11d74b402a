//! Host bindings for the Spin interfaces ping-host provides, generated from the
//! WIT in `host/wit/`: Spin's published `fermyon:spin@2.0.0` (spin-sdk <= 5,
//! WASIp2) and `spin:redis@3.0.0` / `spin:variables@3.0.0` (spin-sdk 7,
//! WASIp3, whose functions are `async func`s). WASI and `wasi:http` come from
//! wasmtime-wasi and wasmtime-wasi-http.
//!
//! A leaf: it knows no implementation. The `connection` resources are
//! generated as opaque types and each host module maps them to its own state
//! by the resource's table index, as Spin's `spin-world` crate does. Each WIT
//! `error` is mapped once to a [`TrappableError`], so host methods return a
//! plain `Result<T, RedisError>` where `?` on a WIT error reaches the guest and
//! [`TrappableError::trap`] stops it; the 3.0.0 errors, identical in shape to
//! the 2.0.0 ones, are converted from them here and nowhere else.

use wasmtime_wasi::TrappableError;

wasmtime::component::bindgen!({
    path: "wit",
    world: "ping:host/spin-imports",
    // `async func`s (the 3.0.0 interfaces) also get `store`: their host
    // functions take an `Accessor` and hold the store only between awaits,
    // so one instance's concurrent requests wait on Redis side by side.
    imports: { default: async | trappable },
    trappable_error_type: {
        "fermyon:spin/redis.error" => RedisError,
        "fermyon:spin/variables.error" => VariablesError,
        "spin:redis/redis.error" => RedisErrorV3,
        "spin:variables/variables.error" => VariablesErrorV3,
    },
});

pub use fermyon::spin::{redis, variables};
/// `spin:redis/redis@3.0.0`.
pub use spin::redis::redis as redis_v3;
/// `spin:variables/variables@3.0.0`.
pub use spin::variables::variables as variables_v3;

/// `fermyon:spin/redis@2.0.0`'s `error`, or a trap.
pub type RedisError = TrappableError<redis::Error>;

/// `fermyon:spin/variables@2.0.0`'s `error`, or a trap.
pub type VariablesError = TrappableError<variables::Error>;

/// `spin:redis/redis@3.0.0`'s `error`, or a trap.
pub type RedisErrorV3 = TrappableError<redis_v3::Error>;

/// `spin:variables/variables@3.0.0`'s `error`, or a trap.
pub type VariablesErrorV3 = TrappableError<variables_v3::Error>;

impl From<redis::Error> for redis_v3::Error {
    fn from(e: redis::Error) -> Self {
        match e {
            redis::Error::InvalidAddress => Self::InvalidAddress,
            redis::Error::TooManyConnections => Self::TooManyConnections,
            redis::Error::TypeError => Self::TypeError,
            redis::Error::Other(s) => Self::Other(s),
        }
    }
}

impl From<variables::Error> for variables_v3::Error {
    fn from(e: variables::Error) -> Self {
        match e {
            variables::Error::InvalidName(s) => Self::InvalidName(s),
            variables::Error::Undefined(s) => Self::Undefined(s),
            variables::Error::Provider(s) => Self::Provider(s),
            variables::Error::Other(s) => Self::Other(s),
        }
    }
}

impl From<redis::RedisResult> for redis_v3::RedisResult {
    fn from(r: redis::RedisResult) -> Self {
        match r {
            redis::RedisResult::Nil => Self::Nil,
            redis::RedisResult::Status(s) => Self::Status(s),
            redis::RedisResult::Int64(n) => Self::Int64(n),
            redis::RedisResult::Binary(b) => Self::Binary(b),
        }
    }
}

impl From<redis_v3::RedisParameter> for redis::RedisParameter {
    fn from(p: redis_v3::RedisParameter) -> Self {
        match p {
            redis_v3::RedisParameter::Int64(n) => Self::Int64(n),
            redis_v3::RedisParameter::Binary(b) => Self::Binary(b),
        }
    }
}

/// A 2.0.0 error (or trap) as the 3.0.0 interface's.
pub fn redis_error_v3(e: RedisError) -> RedisErrorV3 {
    match e.downcast() {
        Ok(e) => redis_v3::Error::from(e).into(),
        Err(trap) => RedisErrorV3::trap(trap),
    }
}
