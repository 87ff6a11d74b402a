//! `ping-host up --from-registry`: pull a Spin OCI artifact and rebuild the
//! app from its locked app. Every blob is checked against its digest before it
//! is used or cached.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::digest::digest_of;
use super::{
    Access, DOCKER_MANIFEST, Descriptor, IMAGE_MANIFEST, ImageManifest, LOCKED_APP, OciError,
    Session, WASM_LAYER, locked,
};
use crate::app::App;

/// What a pull produced.
pub struct Pulled {
    /// The app, its components' Wasm in memory.
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
