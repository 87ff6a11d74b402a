//! The locked app's JSON shape, field for field as Spin 3.x/4.x serializes
//! it (`spin-locked-app`'s `LockedApp`, lock version 0/1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole locked app.
#[derive(Debug, Serialize, Deserialize)]
pub struct LockedApp {
    /// 0 unless the app has host requirements (readers treat 0 as 1).
    pub spin_lock_version: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_understand: Vec<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_requirements: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, LockedVariable>,
    pub triggers: Vec<LockedTrigger>,
    pub components: Vec<LockedComponent>,
}

/// One application variable: its default (absent when required) and secrecy.
#[derive(Debug, Serialize, Deserialize)]
pub struct LockedVariable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Absent means required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// One trigger: its id, type (`http`) and type-specific config.
#[derive(Debug, Serialize, Deserialize)]
pub struct LockedTrigger {
    pub id: String,
    pub trigger_type: String,
    pub trigger_config: Value,
}

/// An HTTP trigger's config: the component it runs and its route.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct HttpTriggerConfig {
    pub(super) component: String,
    pub(super) route: String,
}

/// One component: metadata (allowed hosts, build, description), its Wasm
/// source, and its variables (`config`).
#[derive(Debug, Serialize, Deserialize)]
pub struct LockedComponent {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    pub source: LockedSource,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_requirements: BTreeMap<String, Value>,
}

/// Where a component's Wasm is: a digest (an OCI layer) and/or inline base64.
#[derive(Debug, Serialize, Deserialize)]
pub struct LockedSource {
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Base64 of the content itself, for content of at most [`INLINE_LIMIT`](super::INLINE_LIMIT) bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// `sha256:<hex>` of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
