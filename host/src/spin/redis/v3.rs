//! `spin:redis/redis@3.0.0` (spin-sdk 7, WASIp3) for guests: the same host as
//! `fermyon:spin/redis@2.0.0` — allow-list check, per-instance cap, shared
//! connections, timeouts, password redaction and metrics all come from the
//! parent module — over the 3.0.0 bindings, whose functions are `async
//! func`s. Each takes the instance's state only for the moment it needs it
//! (`Accessor::with`), never across the wait for Redis, so the requests an
//! instance serves concurrently wait on Redis side by side.

use std::time::Instant;

use redis::Value;
use wasmtime::component::{Accessor, HasData, Linker, Resource};

use super::{RedisView, arbitrary, command, flatten, send};
use crate::spin::bindings::redis_v3::{
    self as wit, Connection, Error, RedisParameter, RedisResult,
};
use crate::spin::bindings::{RedisErrorV3, redis_error_v3};

/// Links `spin:redis/redis@3.0.0`; `view` finds the instance's Redis state.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> RedisView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, RedisHostV3>(linker, view)
}

/// Marker tying [`RedisView`] to the 3.0.0 linker entries.
struct RedisHostV3;

impl HasData for RedisHostV3 {
    type Data<'a> = RedisView<'a>;
}

/// Runs `cmd` on the guest's connection `conn`; `name` labels its metrics.
async fn run<T, R: redis::FromRedisValue>(
    accessor: &Accessor<T, RedisHostV3>,
    conn: &Resource<Connection>,
    name: &'static str,
    (cmd, idempotent): (redis::Cmd, bool),
) -> Result<R, RedisErrorV3> {
    let rep = conn.rep();
    let (manager, address) = accessor
        .with(|mut access| {
            let view = access.get();
            view.ctx.connection(view.table, rep)
        })
        .map_err(redis_error_v3)?;
    let started = Instant::now();
    let result = send(manager, &cmd, idempotent).await;
    accessor
        .with(|mut access| access.get().ctx.finish(&address, name, started, result))
        .map_err(redis_error_v3)
}

/// Runs the typed command `name` with `args`: `name` is both the Redis
/// command and its metric label, as in the 2.0.0 interface's `call`.
async fn call<T, R: redis::FromRedisValue>(
    accessor: &Accessor<T, RedisHostV3>,
    conn: &Resource<Connection>,
    name: &'static str,
    args: impl FnOnce(&mut redis::Cmd) -> &mut redis::Cmd,
) -> Result<R, RedisErrorV3> {
    run(accessor, conn, name, command(name, args)).await
}

impl<T> wit::HostConnectionWithStore<T> for RedisHostV3 {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> Result<Resource<Connection>, RedisErrorV3> {
        accessor
            .with(|mut access| {
                let view = access.get();
                view.ctx.open(view.table, address)
            })
            .map(Resource::new_own)
            .map_err(redis_error_v3)
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), RedisErrorV3> {
        call::<T, i64>(accessor, &conn, "PUBLISH", |c| c.arg(channel).arg(payload))
            .await
            .map(drop)
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        key: String,
    ) -> Result<Option<Vec<u8>>, RedisErrorV3> {
        call(accessor, &conn, "GET", |c| c.arg(key)).await
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), RedisErrorV3> {
        call::<T, Value>(accessor, &conn, "SET", |c| c.arg(key).arg(value))
            .await
            .map(drop)
    }

    async fn incr(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        key: String,
    ) -> Result<i64, RedisErrorV3> {
        call(accessor, &conn, "INCR", |c| c.arg(key)).await
    }

    async fn del(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        keys: Vec<String>,
    ) -> Result<u32, RedisErrorV3> {
        call(accessor, &conn, "DEL", |c| c.arg(keys)).await
    }

    async fn sadd(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, RedisErrorV3> {
        call(accessor, &conn, "SADD", |c| c.arg(key).arg(values)).await
    }

    async fn smembers(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        key: String,
    ) -> Result<Vec<String>, RedisErrorV3> {
        call(accessor, &conn, "SMEMBERS", |c| c.arg(key)).await
    }

    async fn srem(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, RedisErrorV3> {
        call(accessor, &conn, "SREM", |c| c.arg(key).arg(values)).await
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        conn: Resource<Connection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> Result<Vec<RedisResult>, RedisErrorV3> {
        let cmd = arbitrary(&command, arguments.into_iter().map(Into::into).collect());
        let value = run::<T, Value>(accessor, &conn, "execute", cmd).await?;
        let mut out = Vec::new();
        flatten(value, &mut out);
        Ok(out.into_iter().map(Into::into).collect())
    }
}

impl wit::Host for RedisView<'_> {
    fn convert_error(&mut self, err: RedisErrorV3) -> wasmtime::Result<Error> {
        err.downcast()
    }
}

impl wit::HostConnection for RedisView<'_> {
    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.ctx.close(self.table, conn.rep())
    }
}
