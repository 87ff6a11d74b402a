//! Spin OCI artifacts: what `spin registry push` produces and
//! containerd-shim-spin pulls. One layer per component's Wasm, one layer with
//! the locked app, and a standard image config labelled with the locked app's
//! digest.

mod auth;
mod digest;
pub mod locked;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::{Deserialize, Serialize};

use crate::app::App;
use digest::digest_of;

pub const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
pub const LOCKED_APP: &str = "application/vnd.fermyon.spin.application.v1+config";
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const LOCKED_APP_DIGEST_LABEL: &str = "com.fermyon.spin.lockedAppDigest";

/// Why a push or pull failed; every message names the registry or reference.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{reference}` is not a valid image reference: {reason}")]
    Reference { reference: String, reason: String },
    #[error(
        "registry {registry} refused access (401 Unauthorized): run `docker login {registry}` or pass --username and --password-stdin"
    )]
    Unauthorized { registry: String },
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("{reference} was not found in the registry")]
    NotFound { reference: String },
    #[error("blob {digest} from {registry} does not match its digest; nothing was cached")]
    DigestMismatch { registry: String, digest: String },
    #[error("{reference} is not a Spin app: no layer of type {LOCKED_APP}")]
    NotSpin { reference: String },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error(transparent)]
    Locked(#[from] locked::LockedError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("component `{id}`: cannot read {what}: {source}")]
    Source {
        id: String,
        what: String,
        source: std::io::Error,
    },
}

/// An OCI content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// An OCI image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

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

/// How to talk to a registry.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Allow plain HTTP (implied for localhost and loopback registries, as in Spin).
    pub insecure: bool,
    /// Explicit credentials; otherwise the Docker config file, otherwise anonymous.
    pub credentials: Option<RegistryAuth>,
}

/// A parsed reference with its client and credentials.
struct Session {
    reference: Reference,
    registry: String,
    client: Client,
    auth: RegistryAuth,
}

impl Session {
    fn open(reference: &str, access: &Access) -> Result<Self, OciError> {
        let parsed: Reference =
            reference
                .parse()
                .map_err(|e: oci_client::ParseError| OciError::Reference {
                    reference: reference.to_owned(),
                    reason: e.to_string(),
                })?;
        let registry = parsed.resolve_registry().to_owned();
        let protocol = if access.insecure || is_loopback(&registry) {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let auth = match &access.credentials {
            Some(c) => c.clone(),
            None => match auth::docker_config_path() {
                Some(path) => {
                    auth::from_docker_config(&path, &registry)?.unwrap_or(RegistryAuth::Anonymous)
                }
                None => RegistryAuth::Anonymous,
            },
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        Ok(Session {
            reference: parsed,
            registry,
            client,
            auth,
        })
    }

    fn error(&self, e: OciDistributionError) -> OciError {
        classify(e, &self.registry, &self.reference.whole())
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// Maps the client's errors to messages a user can act on.
fn classify(e: OciDistributionError, registry: &str, reference: &str) -> OciError {
    let registry = registry.to_owned();
    let text = e.to_string();
    use oci_client::errors::OciErrorCode as Code;
    if let OciDistributionError::RegistryError { envelope, .. } = &e {
        let codes = || envelope.errors.iter().map(|e| &e.code);
        if codes().any(|c| matches!(c, Code::Unauthorized | Code::Denied)) {
            return OciError::Unauthorized { registry };
        }
        if codes().any(|c| {
            matches!(
                c,
                Code::ManifestUnknown | Code::NameUnknown | Code::NotFound
            )
        }) {
            return OciError::NotFound {
                reference: reference.to_owned(),
            };
        }
    }
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => OciError::Unauthorized { registry },
        OciDistributionError::ImageManifestNotFoundError(_) => OciError::NotFound {
            reference: reference.to_owned(),
        },
        OciDistributionError::DigestError(_) => OciError::DigestMismatch {
            registry,
            digest: text,
        },
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            let mut reason = r.to_string();
            let mut source = std::error::Error::source(&r);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
            OciError::Unreachable { registry, reason }
        }
        _ if text.contains("401") || text.contains("UNAUTHORIZED") || text.contains("DENIED") => {
            OciError::Unauthorized { registry }
        }
        _ if text.contains("MANIFEST_UNKNOWN")
            || text.contains("NAME_UNKNOWN")
            || text.contains("404") =>
        {
            OciError::NotFound {
                reference: reference.to_owned(),
            }
        }
        _ => OciError::Registry {
            registry,
            message: text,
        },
    }
}

/// What a push produced.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `registry/repository@sha256:...`, the pinned reference.
    pub pinned: String,
    pub manifest: ImageManifest,
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

    let mut wasm = BTreeMap::new();
    for c in app.components.values() {
        let bytes = c.source.load().map_err(|source| OciError::Source {
            id: c.id.clone(),
            what: c.source.to_string(),
            source,
        })?;
        wasm.insert(c.id.clone(), bytes);
    }
    let locked = locked::lock(app, &wasm);
    let locked_json = serde_json::to_vec(&locked).map_err(locked::LockedError::from)?;

    // Layers: each distinct Wasm too large to inline, then the locked app.
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

    session
        .client
        .auth(&session.reference, &session.auth, RegistryOperation::Push)
        .await
        .map_err(|e| session.error(e))?;
    blobs.push((config_desc, config_json.into()));
    for (desc, bytes) in &blobs {
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
            continue;
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
    }
    progress(&format!("pushing manifest {}", session.reference.whole()));
    session
        .client
        .push_manifest_raw(
            &session.reference,
            manifest_json.clone(),
            http::HeaderValue::from_static(IMAGE_MANIFEST),
        )
        .await
        .map_err(|e| session.error(e))?;
    let pinned = format!(
        "{}/{}@{}",
        session.reference.resolve_registry(),
        session.reference.repository(),
        digest_of(&manifest_json)
    );
    Ok(Pushed { pinned, manifest })
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

/// What a pull produced.
pub struct Pulled {
    pub app: App,
    /// The manifest's digest, as served.
    pub digest: String,
}

/// Pulls `reference` and rebuilds the app from its locked app. Blobs are
/// cached under `cache/oci/blobs/sha256/` by digest, written only after their
/// digest checked out.
pub async fn pull(reference: &str, access: &Access, cache: &Path) -> Result<Pulled, OciError> {
    let session = Session::open(reference, access)?;
    let (manifest_bytes, digest) = session
        .client
        .pull_manifest_raw(
            &session.reference,
            &session.auth,
            &[IMAGE_MANIFEST, DOCKER_MANIFEST],
        )
        .await
        .map_err(|e| session.error(e))?;
    let actual = digest_of(&manifest_bytes);
    if let Some(pinned) = session.reference.digest()
        && pinned != actual
    {
        return Err(OciError::DigestMismatch {
            registry: session.registry.clone(),
            digest: pinned.to_owned(),
        });
    }
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| OciError::Registry {
            registry: session.registry.clone(),
            message: format!(
                "the manifest of {} is not an OCI image manifest: {e}",
                session.reference.whole()
            ),
        })?;

    // The locked app is a layer today; older pushes made it the config blob.
    let locked_desc = manifest
        .layers
        .iter()
        .find(|l| l.media_type == LOCKED_APP)
        .or_else(|| (manifest.config.media_type == LOCKED_APP).then_some(&manifest.config))
        .ok_or_else(|| OciError::NotSpin {
            reference: session.reference.whole(),
        })?
        .clone();
    let locked_json = fetch(&session, &locked_desc, cache).await?;

    let mut wasm = HashMap::new();
    for layer in manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER)
    {
        wasm.insert(layer.digest.clone(), fetch(&session, layer, cache).await?);
    }
    let app = locked::unlock(&locked_json, |_, digest| {
        wasm.get(digest)
            .cloned()
            .ok_or_else(|| format!("its source {digest} is not a layer of the image"))
    })?;
    Ok(Pulled {
        app,
        digest: if digest.is_empty() { actual } else { digest },
    })
}

/// One blob, from the cache or the registry, always checked against its digest.
async fn fetch(session: &Session, desc: &Descriptor, cache: &Path) -> Result<Arc<[u8]>, OciError> {
    let hex = desc
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| OciError::Registry {
            registry: session.registry.clone(),
            message: format!("unsupported digest `{}` (only sha256 is)", desc.digest),
        })?;
    let dir = cache.join("oci/blobs/sha256");
    let path = dir.join(hex);
    let cache_err = |source| OciError::Cache {
        path: path.clone(),
        source,
    };
    if let Ok(bytes) = std::fs::read(&path)
        && digest_of(&bytes) == desc.digest
    {
        return Ok(bytes.into());
    }
    let mut bytes = Vec::with_capacity(desc.size as usize);
    let oci_desc = oci_client::manifest::OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: desc.size as i64,
        ..Default::default()
    };
    session
        .client
        .pull_blob(&session.reference, &oci_desc, &mut bytes)
        .await
        .map_err(|e| session.error(e))?;
    if digest_of(&bytes) != desc.digest || bytes.len() as u64 != desc.size {
        return Err(OciError::DigestMismatch {
            registry: session.registry.clone(),
            digest: desc.digest.clone(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(cache_err)?;
    let tmp = dir.join(format!("{hex}.tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(cache_err)?;
    std::fs::rename(&tmp, &path).map_err(cache_err)?;
    Ok(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_insecure_by_default() {
        for r in [
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["ghcr.io", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback(r), "{r}");
        }
    }

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
