//! What each request's `Store` holds, and the views that hand each host
//! interface its slice of it (the `WasiView`/`WasiHttpView` idiom of
//! wasmtime's `serve`).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::limits::InstanceLimits;
use crate::spin::outbound_http::OutboundHttp;
use crate::spin::redis::{RedisCtx, RedisView};
use crate::spin::variables::VariablesView;
use crate::variables::ComponentVariables;

/// Per-request store data. Built fresh for every request, as Spin does, so no
/// state leaks from one request to the next.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    redis: RedisCtx,
    variables: Arc<ComponentVariables>,
    outbound_http: OutboundHttp,
    pub(super) limits: InstanceLimits,
}

impl HostState {
    /// Fresh per-request state: stdout/stderr inherited (as Spin logs them),
    /// the component's `environment` as WASI environment variables, no
    /// files, no sockets, and a linear-memory cap of `max_memory` bytes.
    pub(super) fn new(
        redis: RedisCtx,
        variables: Arc<ComponentVariables>,
        outbound_http: OutboundHttp,
        environment: &[(String, String)],
        max_memory: usize,
    ) -> Self {
        HostState {
            wasi: WasiCtx::builder()
                .inherit_stdout()
                .inherit_stderr()
                .envs(environment)
                .build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            redis,
            variables,
            outbound_http,
            limits: InstanceLimits::new(max_memory),
        }
    }

    pub(super) fn redis_view(&mut self) -> RedisView<'_> {
        RedisView {
            table: &mut self.table,
            ctx: &mut self.redis,
        }
    }

    pub(super) fn variables_view(&mut self) -> VariablesView<'_> {
        VariablesView(&self.variables)
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
