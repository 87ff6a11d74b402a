//! The serde shape of the manifest subset ping-host reads (Spin's v2 schema,
//! `spin-manifest` `schema/v2.rs`): unknown keys are refused by name.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) spin_manifest_version: toml::Value,
    pub(super) application: RawApplication,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    pub(super) trigger: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub(super) component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApplication {
    pub(super) name: String,
    pub(super) version: Option<String>,
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) authors: Vec<String>,
    #[serde(default)]
    pub(super) trigger: BTreeMap<String, RawAppTrigger>,
    /// The Spin environments the app must be compatible with; `spin build`
    /// checks them, `spin up` does not, and neither does ping-host.
    #[serde(rename = "targets")]
    pub(super) _targets: Option<toml::Value>,
    /// Settings for tools and plugins; Spin ignores them, so does ping-host.
    #[serde(rename = "tool")]
    pub(super) _tool: Option<toml::Value>,
}

/// `[application.trigger.http]`: only `base = "/"` (Spin's default) is meaningful here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAppTrigger {
    pub(super) base: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariable {
    pub(super) description: Option<String>,
    pub(super) default: Option<String>,
    #[serde(default)]
    pub(super) required: bool,
    #[serde(default)]
    pub(super) secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpTrigger {
    pub(super) id: Option<String>,
    pub(super) route: toml::Value,
    pub(super) component: toml::Value,
    pub(super) executor: Option<toml::Value>,
}

/// Unknown keys land in `unsupported` and are refused by name there
/// (`deny_unknown_fields` does not combine with `flatten`).
#[derive(Deserialize)]
pub(super) struct RawComponent {
    pub(super) source: toml::Value,
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, String>,
    /// WASI environment variables, as written (Spin expands no templates here).
    #[serde(default)]
    pub(super) environment: BTreeMap<String, String>,
    /// Used by `spin build`; ignored at run time, recorded when pushing.
    pub(super) build: Option<toml::Value>,
    /// Settings for tools and plugins; Spin ignores them, so does ping-host.
    #[serde(rename = "tool")]
    pub(super) _tool: Option<toml::Value>,
    /// The rest of Spin 3.6's v2 component keys, read only to be refused by
    /// name when they ask for something (see `UNSUPPORTED_COMPONENT_KEYS`).
    #[serde(flatten)]
    pub(super) unsupported: BTreeMap<String, toml::Value>,
}

/// Component keys of Spin 3.6's v2 manifest that ping-host does not
/// implement, with what to do instead. An empty value (`files = []`,
/// `dependencies_inherit_configuration = false`) asks for nothing and is
/// accepted; any other key is unknown.
pub(super) const UNSUPPORTED_COMPONENT_KEYS: [(&str, &str); 9] = [
    ("files", "mounted files; embed the data in the component"),
    ("exclude_files", "mounted files"),
    (
        "allowed_http_hosts",
        "the Spin 1 spelling; use allowed_outbound_hosts",
    ),
    ("key_value_stores", "key-value stores"),
    ("key-value-stores", "key-value stores"),
    ("sqlite_databases", "SQLite databases"),
    ("ai_models", "Serverless AI"),
    (
        "dependencies",
        "component dependencies (compose them with `spin build` or wac first)",
    ),
    (
        "dependencies_inherit_configuration",
        "component dependencies",
    ),
];
