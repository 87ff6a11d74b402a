//! Spin OCI artifacts: what `spin registry push` produces and
//! containerd-shim-spin pulls. One layer per component's Wasm, one layer with
//! the locked app, and a standard image config labelled with the locked app's
//! digest.

mod auth;
mod digest;
pub mod locked;
mod pull;
mod push;

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};

pub use self::pull::{Pulled, pull};
pub use self::push::{Pushed, push};

/// Media type of a component's Wasm layer.
pub const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Media type of the locked-app layer (Spin's `spin.lock` JSON).
pub const LOCKED_APP: &str = "application/vnd.fermyon.spin.application.v1+config";
/// Media type of the image config blob.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the image manifest.
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The image config label holding the locked-app layer's digest.
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

/// How to talk to a registry.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Allow plain HTTP. ping-host implies it for localhost and loopback
    /// registries; Spin 3.6 (`spin registry push/pull`) does not, and needs
    /// `--insecure` for them too.
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
}
