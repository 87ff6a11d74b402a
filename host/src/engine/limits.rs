//! Per-instance resource limits, installed on every store by
//! [`Engine::new_store`](super::Engine::new_store) (wasmtime's `StoreLimits`
//! would make `memory.grow` return -1; this traps with a typed error instead).

/// Why a guest's memory could not grow: typed so the server can answer and
/// count it as a memory failure rather than a generic trap.
#[derive(Debug, thiserror::Error)]
#[error(
    "the component tried to grow its linear memory to {desired} bytes, past the limit of {limit} bytes (raise --max-instance-memory-mib if that is expected)"
)]
pub struct MemoryLimitExceeded {
    /// The size asked for, bytes.
    pub desired: usize,
    /// The limit, bytes.
    pub limit: usize,
}

/// Tables hold function references; ping needs a handful. This bounds what a
/// hostile component can make the host allocate.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Growing past the memory limit traps with [`MemoryLimitExceeded`] instead of
/// letting `memory.grow` return -1, so a runaway guest stops at once and the
/// failure is attributable.
pub struct InstanceLimits {
    max_memory: usize,
}

impl InstanceLimits {
    /// Limits with a linear-memory cap of `max_memory` bytes.
    pub fn new(max_memory: usize) -> Self {
        InstanceLimits { max_memory }
    }
}

impl wasmtime::ResourceLimiter for InstanceLimits {
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
