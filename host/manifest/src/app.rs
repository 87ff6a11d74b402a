//! The application model every source (a `spin.toml` today, a locked app from a
//! registry later) is turned into before anything runs.
//!
//! Keeping it separate from the manifest syntax means the runtime has one shape
//! to validate and serve, however the app arrived.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A whole Spin application, as ping-host runs it.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub authors: Vec<String>,
    /// Application variables (`[variables]`), by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// Components by id, in manifest order of their ids.
    pub components: BTreeMap<String, Component>,
    /// HTTP triggers, in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
}

/// One `[variables]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    pub description: Option<String>,
    /// `Some(default)`, or `None` for `required = true`.
    pub default: Option<String>,
    /// A secret's value never appears in logs or errors.
    pub secret: bool,
}

/// One `[component.<id>]`.
#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    pub description: Option<String>,
    pub source: Source,
    /// `allowed_outbound_hosts`, still holding `{{ variable }}` templates.
    pub allowed_outbound_hosts: Vec<String>,
    /// `[component.<id>.variables]`: what the guest sees, as templates.
    pub variables: BTreeMap<String, String>,
    /// `environment`: WASI environment variables every instance sees, as
    /// written (no templates, as in Spin; the locked app's `env`).
    pub environment: BTreeMap<String, String>,
    /// `[component.<id>.build]`, kept so a pushed app records how it was built.
    pub build: Option<serde_json::Value>,
}

/// Where a component's Wasm comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk (absolute, resolved against the manifest's directory).
    File(PathBuf),
    /// Bytes already in memory (for example pulled from a registry).
    Bytes(std::sync::Arc<[u8]>),
}

impl Source {
    /// The Wasm bytes: read from disk, or shared when already in memory.
    pub fn load(&self) -> std::io::Result<std::sync::Arc<[u8]>> {
        match self {
            Source::File(path) => Ok(std::fs::read(path)?.into()),
            Source::Bytes(bytes) => Ok(bytes.clone()),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Bytes(_) => f.write_str("the pulled artifact"),
        }
    }
}

/// One `[[trigger.http]]`.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    /// The trigger id, as written or generated the way Spin does.
    pub id: String,
    /// The route as written, without the app's base.
    pub route: String,
    pub component: String,
    /// `[application.trigger.http] base` (`/` by default): every route is
    /// served under it, as in Spin 3.6 (`spin-base-path`).
    pub base: String,
}

impl HttpTrigger {
    /// The route under the app's base (`/base` + `/x/...`), one trailing `/`
    /// dropped from each as Spin's `sanitize_with_base` does (`/` stays `/`).
    pub fn based_route(&self) -> String {
        let base = self.base.strip_suffix('/').unwrap_or(&self.base);
        let route = self.route.strip_suffix('/').unwrap_or(&self.route);
        match format!("{base}{route}") {
            empty if empty.is_empty() => "/".to_owned(),
            based => based,
        }
    }
}
