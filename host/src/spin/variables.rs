//! `fermyon:spin/variables@2.0.0` for guests, like Spin's `factor-variables`:
//! each instance sees only its own component's variables (already resolved
//! and expanded at start-up, so a `get` is a map lookup).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::bindings::VariablesError;
use super::bindings::variables::{self as wit, Error};
use crate::variables::{ComponentVariables, VariableError};

/// Links `fermyon:spin/variables@2.0.0`; `view` finds the instance's variables.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> VariablesView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, VariablesHost>(linker, view)
}

/// What the generated host trait is implemented on: one component's variables.
pub struct VariablesView<'a>(pub &'a Arc<ComponentVariables>);

/// Marker tying [`VariablesView`] to the linker.
struct VariablesHost;

impl HasData for VariablesHost {
    type Data<'a> = VariablesView<'a>;
}

impl wit::Host for VariablesView<'_> {
    async fn get(&mut self, name: String) -> Result<String, VariablesError> {
        match self.0.get(&name) {
            Ok(value) => Ok(value.to_owned()),
            Err(VariableError::InvalidName(n)) => Err(Error::InvalidName(n).into()),
            Err(_) => Err(Error::Undefined(name).into()),
        }
    }

    fn convert_error(&mut self, err: VariablesError) -> wasmtime::Result<Error> {
        err.downcast()
    }
}
