//! `ping-host push`: the artifact `spin registry push` produces, byte for
//! byte where Spin's output is deterministic (config blob, locked app, layer
//! order), pushed blob by blob and then the manifest.

use std::collections::BTreeMap;
use std::sync::Arc;

use oci_client::RegistryOperation;
use serde::Serialize;

use super::digest::digest_of;
use super::{
    Access, Descriptor, IMAGE_CONFIG, IMAGE_MANIFEST, ImageManifest, LOCKED_APP,
    LOCKED_APP_DIGEST_LABEL, OciError, Session, WASM_LAYER, locked,
};
use crate::app::App;

/// The image config Spin writes: a wasm/wasip1 image with the locked app's digest as a label.
#[derive(Serialize)]
struct ImageConfig {
    architecture: &'static str,
    os: &'static str,
    config: ConfigLabels,
    rootfs: RootFs,
}

impl ImageConfig {
    /// Spin's config for an app whose locked-app layer has digest `locked_app`.
    fn for_locked_app(locked_app: &str) -> Self {
        ImageConfig {
            architecture: "wasm",
            os: "wasip1",
            config: ConfigLabels {
                labels: BTreeMap::from([(
                    LOCKED_APP_DIGEST_LABEL.to_owned(),
                    locked_app.to_owned(),
                )]),
            },
            rootfs: RootFs {
                kind: "layers",
                diff_ids: Vec::new(),
            },
        }
    }
}

#[derive(Serialize)]
struct ConfigLabels {
    #[serde(rename = "Labels")]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// What a push produced.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `registry/repository@sha256:...`, the pinned reference.
    pub pinned: String,
    /// The manifest as pushed.
    pub manifest: ImageManifest,
}

/// Everything to upload for one app: blobs in push order, then the manifest.
struct Artifact {
    blobs: Vec<(Descriptor, Arc<[u8]>)>,
    manifest: ImageManifest,
    manifest_json: Vec<u8>,
}

impl Artifact {
    /// Layers: each distinct Wasm too large to inline, then the locked app;
    /// the config blob is uploaded last, before the manifest.
    fn build(app: &App, extra_annotations: &[(String, String)]) -> Result<Self, OciError> {
        let wasm = component_wasm(app)?;
        let locked = locked::lock(app, &wasm);
        let locked_json = serde_json::to_vec(&locked).map_err(locked::LockedError::from)?;
        let mut blobs: Vec<(Descriptor, Arc<[u8]>)> = Vec::new();
        for bytes in wasm.values().filter(|b| b.len() > locked::INLINE_LIMIT) {
            let d = descriptor(WASM_LAYER, bytes);
            if !blobs.iter().any(|(b, _)| b.digest == d.digest) {
                blobs.push((d, bytes.clone()));
            }
        }
        let locked_desc = descriptor(LOCKED_APP, &locked_json);
        blobs.push((locked_desc.clone(), locked_json.into()));
        let config = ImageConfig::for_locked_app(&locked_desc.digest);
        let config_json = serde_json::to_vec(&config).map_err(locked::LockedError::from)?;
        let config_desc = descriptor(IMAGE_CONFIG, &config_json);
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(IMAGE_MANIFEST.to_owned()),
            config: config_desc.clone(),
            layers: blobs.iter().map(|(d, _)| d.clone()).collect(),
            annotations: annotations(app, extra_annotations),
        };
        let manifest_json = serde_json::to_vec(&manifest).map_err(locked::LockedError::from)?;
        blobs.push((config_desc, config_json.into()));
        Ok(Artifact {
            blobs,
            manifest,
            manifest_json,
        })
    }
}

/// Each component's Wasm, by id.
fn component_wasm(app: &App) -> Result<BTreeMap<String, Arc<[u8]>>, OciError> {
    let mut wasm = BTreeMap::new();
    for c in app.components.values() {
        let bytes = c.source.load().map_err(|source| OciError::Source {
            id: c.id.clone(),
            what: c.source.to_string(),
            source,
        })?;
        wasm.insert(c.id.clone(), bytes);
    }
    Ok(wasm)
}

/// Pushes `app` to `reference`, reporting each blob through `progress`.
pub async fn push(
    app: &App,
    reference: &str,
    access: &Access,
    extra_annotations: &[(String, String)],
    progress: impl Fn(&str),
) -> Result<Pushed, OciError> {
    let session = Session::open(reference, access)?;
    let artifact = Artifact::build(app, extra_annotations)?;
    session
        .client
        .auth(&session.reference, &session.auth, RegistryOperation::Push)
        .await
        .map_err(|e| session.error(e))?;
    for (desc, bytes) in &artifact.blobs {
        upload(&session, desc, bytes, &progress).await?;
    }
    progress(&format!("pushing manifest {}", session.reference.whole()));
    session
        .client
        .push_manifest_raw(
            &session.reference,
            artifact.manifest_json.clone(),
            http::HeaderValue::from_static(IMAGE_MANIFEST),
        )
        .await
        .map_err(|e| session.error(e))?;
    let pinned = format!(
        "{}/{}@{}",
        session.reference.resolve_registry(),
        session.reference.repository(),
        digest_of(&artifact.manifest_json)
    );
    Ok(Pushed {
        pinned,
        manifest: artifact.manifest,
    })
}

/// Uploads one blob unless the registry already has it.
async fn upload(
    session: &Session,
    desc: &Descriptor,
    bytes: &[u8],
    progress: &impl Fn(&str),
) -> Result<(), OciError> {
    let exists = session
        .client
        .blob_exists(&session.reference, &desc.digest)
        .await
        .map_err(|e| session.error(e))?;
    if exists {
        progress(&format!(
            "{} {} ({} bytes) already present",
            desc.digest, desc.media_type, desc.size
        ));
        return Ok(());
    }
    progress(&format!(
        "pushing {} {} ({} bytes)",
        desc.digest, desc.media_type, desc.size
    ));
    session
        .client
        .push_blob(&session.reference, bytes.to_vec(), &desc.digest)
        .await
        .map_err(|e| session.error(e))?;
    Ok(())
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: digest_of(bytes),
        size: bytes.len() as u64,
    }
}

/// The standard `org.opencontainers.image.*` annotations, user ones winning.
fn annotations(app: &App, extra: &[(String, String)]) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(
        "org.opencontainers.image.title".to_owned(),
        app.name.clone(),
    );
    if let Some(v) = &app.version {
        a.insert("org.opencontainers.image.version".to_owned(), v.clone());
    }
    if let Some(d) = &app.description {
        a.insert("org.opencontainers.image.description".to_owned(), d.clone());
    }
    if !app.authors.is_empty() {
        a.insert(
            "org.opencontainers.image.authors".to_owned(),
            app.authors.join(", "),
        );
    }
    a.insert("org.opencontainers.image.created".to_owned(), created());
    for (k, v) in extra {
        a.insert(k.clone(), v.clone());
    }
    a
}

/// RFC 3339 creation time; `SOURCE_DATE_EPOCH` makes it reproducible.
fn created() -> String {
    let when = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap_or_else(std::time::SystemTime::now);
    humantime::format_rfc3339_seconds(when).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_blob_matches_spins() {
        let config = ImageConfig::for_locked_app(
            "sha256:c1df5fbc96c8635d4ae850ccd936bcb2a21e64283d1bf442a9d3d19e25e2b204",
        );
        // Byte-for-byte the config.json captured from `spin registry push`.
        let spin = r#"{"architecture":"wasm","os":"wasip1","config":{"Labels":{"com.fermyon.spin.lockedAppDigest":"sha256:c1df5fbc96c8635d4ae850ccd936bcb2a21e64283d1bf442a9d3d19e25e2b204"}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert_eq!(serde_json::to_string(&config).expect("json"), spin);
        assert_eq!(
            digest_of(spin.as_bytes()),
            "sha256:3f77cca9bfe6f4df6cca1a4a8fd83077d1c34eea80850e0518094c0c979efaa4"
        );
    }
}
