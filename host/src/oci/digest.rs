//! Content digests in the OCI form.

use sha2::{Digest, Sha256};

/// `sha256:<hex>` of `bytes`, the OCI digest form.
pub(crate) fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}
