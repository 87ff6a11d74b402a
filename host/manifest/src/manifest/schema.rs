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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComponent {
    pub(super) source: toml::Value,
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, String>,
    /// Used by `spin build`; ignored at run time, recorded when pushing.
    pub(super) build: Option<toml::Value>,
}
