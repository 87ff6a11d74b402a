//! Spin's locked app (`spin.lock`), the JSON that `spin registry push` puts in
//! an OCI layer and containerd-shim-spin reads back.
//!
//! Field order, omitted-when-empty rules and key sorting follow what Spin
//! serializes, so an artifact pushed by ping-host is indistinguishable in
//! structure from one pushed by Spin (see the captured sample in
//! `shared/reference/spin-4.0.2-push-sample/`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;

use self::schema::HttpTriggerConfig;
pub use self::schema::{LockedApp, LockedComponent, LockedSource, LockedTrigger, LockedVariable};
use super::digest::digest_of;
use crate::app::{App, Component, HttpTrigger, Source, VariableDecl};

/// Content of this size or smaller is inlined in the locked app, not pushed as a layer.
pub const INLINE_LIMIT: usize = 128;
/// The content type Spin records for component sources.
pub const WASM_CONTENT_TYPE: &str = "application/wasm";

mod schema;

/// Why a locked app cannot be run by ping-host.
#[derive(Debug, thiserror::Error)]
pub enum LockedError {
    #[error("the locked app is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the app requires host features ping-host does not have: {0}")]
    HostRequirements(String),
    #[error("trigger `{id}` has type `{kind}`; ping-host runs HTTP triggers only")]
    TriggerType { id: String, kind: String },
    #[error("trigger `{0}` has no string `component` and `route` in its trigger_config")]
    TriggerConfig(String),
    #[error("component `{id}` uses `{feature}`, which ping-host does not support")]
    Unsupported { id: String, feature: &'static str },
    #[error("component `{0}` has neither inline content nor a digest")]
    NoContent(String),
    #[error("component `{id}`: inline content is not valid base64")]
    Inline { id: String },
    #[error("component `{id}`: {message}")]
    Blob { id: String, message: String },
    #[error("trigger `{trigger}` names component `{component}`, which the app does not define")]
    UnknownComponent { trigger: String, component: String },
}

/// Builds the locked app for `app`, given each component's Wasm (by id).
pub fn lock(app: &App, wasm: &BTreeMap<String, Arc<[u8]>>) -> LockedApp {
    let variables = app
        .variables
        .iter()
        .map(|(name, v)| {
            let locked = LockedVariable {
                description: v.description.clone(),
                default: v.default.clone(),
                secret: v.secret,
            };
            (name.clone(), locked)
        })
        .collect();
    let triggers = app.http_triggers.iter().map(lock_trigger).collect();
    let components = app
        .components
        .values()
        .map(|c| lock_component(c, wasm.get(&c.id).map(|b| &b[..]).unwrap_or_default()))
        .collect();
    LockedApp {
        spin_lock_version: 0,
        must_understand: Vec::new(),
        metadata: lock_metadata(app),
        host_requirements: BTreeMap::new(),
        variables,
        triggers,
        components,
    }
}

/// The app's `metadata`, keys as Spin writes them.
fn lock_metadata(app: &App) -> BTreeMap<String, Value> {
    let mut metadata = BTreeMap::new();
    if !app.authors.is_empty() {
        metadata.insert("authors".into(), Value::from(app.authors.clone()));
    }
    if let Some(d) = &app.description {
        metadata.insert("description".into(), Value::from(d.clone()));
    }
    metadata.insert("name".into(), Value::from(app.name.clone()));
    metadata.insert("trigger".into(), serde_json::json!({ "type": "http" }));
    // Spin writes the app's HTTP base here when it is not the default.
    let base = app.http_triggers.first().map_or("/", |t| t.base.as_str());
    let triggers = if base == "/" {
        serde_json::json!({})
    } else {
        serde_json::json!({ "http": { "base": base } })
    };
    metadata.insert("triggers".into(), triggers);
    if let Some(v) = &app.version {
        metadata.insert("version".into(), Value::from(v.clone()));
    }
    metadata
}

fn lock_trigger(t: &HttpTrigger) -> LockedTrigger {
    LockedTrigger {
        id: t.id.clone(),
        trigger_type: "http".into(),
        trigger_config: serde_json::to_value(HttpTriggerConfig {
            component: t.component.clone(),
            route: t.route.clone(),
        })
        .unwrap_or_default(),
    }
}

/// One component; its Wasm is inlined when it is at most [`INLINE_LIMIT`] bytes.
fn lock_component(c: &Component, bytes: &[u8]) -> LockedComponent {
    let mut metadata = BTreeMap::new();
    if !c.allowed_outbound_hosts.is_empty() {
        metadata.insert(
            "allowed_outbound_hosts".into(),
            Value::from(c.allowed_outbound_hosts.clone()),
        );
    }
    if let Some(build) = &c.build {
        metadata.insert("build".into(), sorted(build));
    }
    if let Some(d) = &c.description {
        metadata.insert("description".into(), Value::from(d.clone()));
    }
    LockedComponent {
        id: c.id.clone(),
        metadata,
        source: LockedSource {
            content_type: WASM_CONTENT_TYPE.into(),
            source: None,
            inline: (bytes.len() <= INLINE_LIMIT)
                .then(|| base64::engine::general_purpose::STANDARD.encode(bytes)),
            digest: Some(digest_of(bytes)),
        },
        env: c.environment.clone(),
        files: Vec::new(),
        config: c.variables.clone(),
        dependencies: BTreeMap::new(),
        host_requirements: BTreeMap::new(),
    }
}

/// Object keys in sorted order at every level, whatever serde_json's map type is.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<_, _> = map.iter().map(|(k, v)| (k.clone(), sorted(v))).collect();
            Value::Object(ordered.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The strings of a JSON array (anything else reads as empty).
fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Turns a locked app back into an [`App`]. `blob` fetches a component's
/// content by digest (already verified against it).
pub fn unlock(
    json: &[u8],
    mut blob: impl FnMut(&str, &str) -> Result<Arc<[u8]>, String>,
) -> Result<App, LockedError> {
    let locked: LockedApp = serde_json::from_slice(json)?;
    if !locked.host_requirements.is_empty() || !locked.must_understand.is_empty() {
        let keys: Vec<_> = locked.host_requirements.keys().cloned().collect();
        return Err(LockedError::HostRequirements(keys.join(", ")));
    }
    let text = |key: &str| {
        locked
            .metadata
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let authors = strings(locked.metadata.get("authors"));

    let variables = locked
        .variables
        .into_iter()
        .map(|(name, v)| {
            let decl = VariableDecl {
                description: v.description,
                default: v.default,
                secret: v.secret,
            };
            (name, decl)
        })
        .collect();

    let mut components = BTreeMap::new();
    for c in locked.components {
        let component = unlock_component(c, &mut blob)?;
        components.insert(component.id.clone(), component);
    }
    let base = locked
        .metadata
        .get("triggers")
        .and_then(|t| t.get("http"))
        .and_then(|h| h.get("base"))
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    let http_triggers = locked
        .triggers
        .into_iter()
        .map(|t| unlock_trigger(t, &components, &base))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(App {
        name: text("name").unwrap_or_else(|| "app".into()),
        version: text("version"),
        description: text("description"),
        authors,
        variables,
        components,
        http_triggers,
    })
}

/// One component, refusing what ping-host cannot run.
fn unlock_component(
    c: LockedComponent,
    blob: &mut impl FnMut(&str, &str) -> Result<Arc<[u8]>, String>,
) -> Result<Component, LockedError> {
    let unsupported = |feature| LockedError::Unsupported {
        id: c.id.clone(),
        feature,
    };
    if !c.files.is_empty() {
        return Err(unsupported("files"));
    }
    if !c.dependencies.is_empty() {
        return Err(unsupported("dependencies"));
    }
    if !c.host_requirements.is_empty() {
        return Err(unsupported("host_requirements"));
    }
    let bytes: Arc<[u8]> = match (&c.source.inline, &c.source.digest) {
        (Some(inline), _) => base64::engine::general_purpose::STANDARD
            .decode(inline)
            .map_err(|_| LockedError::Inline { id: c.id.clone() })?
            .into(),
        (None, Some(digest)) => blob(&c.id, digest).map_err(|message| LockedError::Blob {
            id: c.id.clone(),
            message,
        })?,
        (None, None) => return Err(LockedError::NoContent(c.id)),
    };
    Ok(Component {
        description: c
            .metadata
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        source: Source::Bytes(bytes),
        allowed_outbound_hosts: strings(c.metadata.get("allowed_outbound_hosts")),
        build: c.metadata.get("build").cloned(),
        variables: c.config,
        environment: c.env,
        id: c.id,
    })
}

/// One trigger: HTTP, naming a component the app defines.
fn unlock_trigger(
    t: LockedTrigger,
    components: &BTreeMap<String, Component>,
    base: &str,
) -> Result<HttpTrigger, LockedError> {
    if t.trigger_type != "http" {
        return Err(LockedError::TriggerType {
            id: t.id,
            kind: t.trigger_type,
        });
    }
    let config: HttpTriggerConfig = serde_json::from_value(t.trigger_config)
        .map_err(|_| LockedError::TriggerConfig(t.id.clone()))?;
    if !components.contains_key(&config.component) {
        return Err(LockedError::UnknownComponent {
            trigger: t.id,
            component: config.component,
        });
    }
    Ok(HttpTrigger {
        id: t.id,
        route: config.route,
        component: config.component,
        base: base.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The locked app captured from a real `spin registry push` (Spin 4.0.2).
    const SPIN_SAMPLE: &str = r#"{"spin_lock_version":0,"metadata":{"authors":["spin-build check"],"description":"GET /ping increments a Redis counter","name":"ping-sdk6","trigger":{"type":"http"},"triggers":{},"version":"0.1.0"},"variables":{"redis_address":{"default":"redis://127.0.0.1:6399"}},"triggers":[{"id":"ping-http-trigger","trigger_type":"http","trigger_config":{"component":"ping","route":"/ping"}}],"components":[{"id":"ping","metadata":{"allowed_outbound_hosts":["redis://127.0.0.1:6399"],"build":{"command":"cargo build --target wasm32-wasip2 --release","watch":["src/**/*.rs","Cargo.toml"]}},"source":{"content_type":"application/wasm","digest":"sha256:7a0e81eb933102cd9832b69555a2503315e6ce44176c21438b6c3e5a189080c4"},"config":{"redis_address":"{{ redis_address }}"}}]}"#;

    #[test]
    fn round_trips_spins_own_output_byte_for_byte() {
        let wasm: Arc<[u8]> = vec![7u8; 200].into();
        let app = unlock(SPIN_SAMPLE.as_bytes(), |_, digest| {
            assert_eq!(
                digest,
                "sha256:7a0e81eb933102cd9832b69555a2503315e6ce44176c21438b6c3e5a189080c4"
            );
            Ok(wasm.clone())
        })
        .expect("Spin's locked app is readable");
        assert_eq!(app.http_triggers[0].route, "/ping");
        // Re-locking with the same content must reproduce Spin's bytes, except the
        // digest, which is computed from the (stand-in) content.
        let mut by_id = BTreeMap::new();
        by_id.insert("ping".to_owned(), wasm.clone());
        let json = serde_json::to_string(&lock(&app, &by_id)).expect("serializes");
        let expected = SPIN_SAMPLE.replace(
            "sha256:7a0e81eb933102cd9832b69555a2503315e6ce44176c21438b6c3e5a189080c4",
            &digest_of(&wasm),
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn an_http_base_travels_in_the_metadata_as_spin_writes_it() {
        let with_base = SPIN_SAMPLE.replace(
            r#""triggers":{},"#,
            r#""triggers":{"http":{"base":"/base"}},"#,
        );
        let wasm: Arc<[u8]> = vec![7u8; 200].into();
        let app = unlock(with_base.as_bytes(), |_, _| Ok(wasm.clone())).expect("readable");
        assert_eq!(app.http_triggers[0].based_route(), "/base/ping");
        let mut by_id = BTreeMap::new();
        by_id.insert("ping".to_owned(), wasm.clone());
        let json = serde_json::to_string(&lock(&app, &by_id)).expect("serializes");
        assert!(
            json.contains(r#""triggers":{"http":{"base":"/base"}}"#),
            "{json}"
        );
    }

    #[test]
    fn the_environment_travels_as_spins_env() {
        let with_env =
            SPIN_SAMPLE.replace(r#""config":{"#, r#""env":{"GREETING":"hello"},"config":{"#);
        let wasm: Arc<[u8]> = vec![7u8; 200].into();
        let app = unlock(with_env.as_bytes(), |_, _| Ok(wasm.clone())).expect("readable");
        assert_eq!(app.components["ping"].environment["GREETING"], "hello");
        let expected = with_env.replace(
            "sha256:7a0e81eb933102cd9832b69555a2503315e6ce44176c21438b6c3e5a189080c4",
            &digest_of(&wasm),
        );
        let by_id = BTreeMap::from([("ping".to_owned(), wasm)]);
        let json = serde_json::to_string(&lock(&app, &by_id)).expect("serializes");
        assert_eq!(json, expected, "written back where Spin writes it");
    }

    #[test]
    fn small_content_is_inlined() {
        let wasm: Arc<[u8]> = b"\0asm\x0d\0\x01\0".to_vec().into();
        let app = unlock(SPIN_SAMPLE.as_bytes(), |_, _| Ok(wasm.clone())).expect("readable");
        let mut by_id = BTreeMap::new();
        by_id.insert("ping".to_owned(), wasm.clone());
        let locked = lock(&app, &by_id);
        let source = &locked.components[0].source;
        assert_eq!(source.inline.as_deref(), Some("AGFzbQ0AAQA="));
        let back = unlock(&serde_json::to_vec(&locked).expect("json"), |_, _| {
            Err("no blobs needed".into())
        })
        .expect("inline content needs no blob");
        assert!(matches!(&back.components["ping"].source, Source::Bytes(b) if b[..] == wasm[..]));
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let other = SPIN_SAMPLE.replace(r#""trigger_type":"http""#, r#""trigger_type":"redis""#);
        let e =
            unlock(other.as_bytes(), |_, _| Ok(vec![0u8; 1].into())).expect_err("redis trigger");
        assert!(e.to_string().contains("HTTP triggers only"), "{e}");
        let reqs = SPIN_SAMPLE.replace(
            r#""spin_lock_version":0,"#,
            r#""spin_lock_version":1,"host_requirements":{"local_service_chaining":"required"},"#,
        );
        let e = unlock(reqs.as_bytes(), |_, _| Ok(vec![0u8; 1].into())).expect_err("host reqs");
        assert!(e.to_string().contains("local_service_chaining"), "{e}");
    }
}
