//! `fermyon:spin/variables@2.0.0` (spin-sdk <= 5) and
//! `spin:variables/variables@3.0.0` (spin-sdk 7, an `async func`) for guests,
//! like Spin's `factor-variables`: each instance sees only its own
//! component's variables (already resolved and expanded at start-up, so a
//! `get` is a map lookup, answered alike by both versions).

use std::sync::Arc;

use wasmtime::component::{Accessor, HasData, Linker};

use super::bindings::variables::{self as wit, Error};
use super::bindings::{VariablesError, VariablesErrorV3, variables_v3 as wit_v3};
use crate::variables::{ComponentVariables, VariableError};

/// Links `fermyon:spin/variables@2.0.0`; `view` finds the instance's variables.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> VariablesView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, VariablesHost>(linker, view)
}

/// Links `spin:variables/variables@3.0.0`; `view` finds the instance's variables.
pub fn add_v3_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> VariablesView<'_>,
) -> wasmtime::Result<()> {
    wit_v3::add_to_linker::<T, VariablesHost>(linker, view)
}

/// What the generated host trait is implemented on: one component's variables.
pub struct VariablesView<'a>(pub &'a Arc<ComponentVariables>);

/// Marker tying [`VariablesView`] to the linker.
struct VariablesHost;

impl HasData for VariablesHost {
    type Data<'a> = VariablesView<'a>;
}

impl VariablesView<'_> {
    /// `get` for both interface versions.
    fn lookup(&self, name: String) -> Result<String, Error> {
        match self.0.get(&name) {
            Ok(value) => Ok(value.to_owned()),
            Err(VariableError::InvalidName(n)) => Err(Error::InvalidName(n)),
            Err(_) => Err(Error::Undefined(name)),
        }
    }
}

impl wit::Host for VariablesView<'_> {
    async fn get(&mut self, name: String) -> Result<String, VariablesError> {
        Ok(self.lookup(name)?)
    }

    fn convert_error(&mut self, err: VariablesError) -> wasmtime::Result<Error> {
        err.downcast()
    }
}

impl<T> wit_v3::HostWithStore<T> for VariablesHost {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> Result<String, VariablesErrorV3> {
        let found = accessor.with(|mut access| access.get().lookup(name));
        Ok(found.map_err(wit_v3::Error::from)?)
    }
}

impl wit_v3::Host for VariablesView<'_> {
    fn convert_error(&mut self, err: VariablesErrorV3) -> wasmtime::Result<wit_v3::Error> {
        err.downcast()
    }
}
