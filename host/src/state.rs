//! What each request's `Store` holds, and the glue that hands each host
//! interface its slice of it.

use std::sync::Arc;

use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::variables::{self, Error as VariablesError};
use crate::outbound_http::OutboundHttp;
use crate::redis::{RedisCtx, RedisView};
use crate::variables::{ComponentVariables, VariableError};

/// Per-request store data. Built fresh for every request, as Spin does, so no
/// state leaks from one request to the next.
pub struct HostState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub redis: RedisCtx,
    pub variables: Arc<ComponentVariables>,
    pub outbound_http: OutboundHttp,
    pub limits: Limits,
    /// The request's place in the instance pool: released when the store drops.
    pub admission: Option<Admission>,
}

/// A slot in the instance pool (a semaphore permit) plus the in-use gauge.
pub struct Admission {
    pub _permit: tokio::sync::OwnedSemaphorePermit,
    pub _gauge: crate::metrics::InstanceInUse,
}

/// Why a guest's memory could not grow: typed so the server can answer and
/// count it as a memory failure rather than a generic trap.
#[derive(Debug, thiserror::Error)]
#[error(
    "the component tried to grow its linear memory to {desired} bytes, past the limit of {limit} bytes (raise --max-instance-memory-mib if that is expected)"
)]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

/// Per-instance resource limits. Growing past the memory limit traps with
/// [`MemoryLimitExceeded`] instead of letting `memory.grow` return -1, so a
/// runaway guest stops at once and the failure is attributable.
pub struct Limits {
    max_memory: usize,
}

/// Tables hold function references; ping needs a handful. This bounds what a
/// hostile component can make the host allocate.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.max_memory,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl HostState {
    /// Fresh per-request state for component `id`: stdout/stderr inherited (as
    /// Spin logs them), no files, no sockets, and a linear-memory cap.
    pub fn new(
        id: Arc<str>,
        pool: Arc<crate::redis::RedisPool>,
        allowed: Arc<crate::outbound::AllowedHosts>,
        variables: Arc<ComponentVariables>,
        max_memory: usize,
    ) -> Self {
        HostState {
            wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            redis: RedisCtx::new(pool, allowed.clone(), id.clone()),
            variables,
            outbound_http: OutboundHttp {
                allowed,
                component: id,
            },
            limits: Limits { max_memory },
            admission: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound_http,
        }
    }
}

impl HostState {
    pub fn redis_view(&mut self) -> RedisView<'_> {
        RedisView {
            table: &mut self.table,
            ctx: &mut self.redis,
        }
    }

    pub fn variables_view(&mut self) -> VariablesView<'_> {
        VariablesView(&self.variables)
    }
}

/// `fermyon:spin/variables` sees only the component's own variables.
pub struct VariablesView<'a>(&'a ComponentVariables);

/// Marker tying [`VariablesView`] to the linker.
pub struct VariablesHost;

impl HasData for VariablesHost {
    type Data<'a> = VariablesView<'a>;
}

impl variables::Host for VariablesView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, VariablesError>> {
        Ok(match self.0.get(&name) {
            Ok(value) => Ok(value.to_owned()),
            Err(VariableError::InvalidName(n)) => Err(VariablesError::InvalidName(n)),
            Err(_) => Err(VariablesError::Undefined(name)),
        })
    }
}
