//! Registry credentials: `--username` with `--password-stdin`, or the Docker
//! config file that `docker login` / `spin registry login` maintain.

use std::path::PathBuf;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: `auths.{registry}.auth` is not base64 of `user:password`")]
    Malformed { path: PathBuf, registry: String },
}

/// The Docker config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(|d| PathBuf::from(d).join("config.json"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")))
}

/// `host[:port]` of a config key such as `https://index.docker.io/v1/` or `ghcr.io`.
fn registry_of(key: &str) -> &str {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    key.split('/').next().unwrap_or(key)
}

fn same_registry(a: &str, b: &str) -> bool {
    const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    a.eq_ignore_ascii_case(b) || (DOCKER_HUB.contains(&a) && DOCKER_HUB.contains(&b))
}

/// Credentials for `registry` from the Docker config at `path`, if it has any.
/// Credential helpers (`credsStore`, `credHelpers`) are not consulted.
pub fn from_docker_config(
    path: &std::path::Path,
    registry: &str,
) -> Result<Option<RegistryAuth>, AuthError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuthError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| AuthError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for (key, entry) in auths {
        if !same_registry(registry_of(key), registry) {
            continue;
        }
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        };
        if let (Some(user), Some(password)) = (field("username"), field("password")) {
            return Ok(Some(RegistryAuth::Basic(user.into(), password.into())));
        }
        if let Some(encoded) = field("auth") {
            let malformed = || AuthError::Malformed {
                path: path.to_owned(),
                registry: key.clone(),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| malformed())?;
            let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
            let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
            return Ok(Some(RegistryAuth::Basic(user.into(), password.into())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).expect("write");
        (dir, path)
    }

    #[test]
    fn reads_auth_and_username_password_forms() {
        let (_d, path) = config(
            r#"{"auths":{"127.0.0.1:5000":{"auth":"dTpwQHNz"},"https://ghcr.io":{"username":"a","password":"b"}}}"#,
        );
        let auth = from_docker_config(&path, "127.0.0.1:5000").expect("readable");
        assert_eq!(auth, Some(RegistryAuth::Basic("u".into(), "p@ss".into())));
        let auth = from_docker_config(&path, "ghcr.io").expect("readable");
        assert_eq!(auth, Some(RegistryAuth::Basic("a".into(), "b".into())));
        assert_eq!(
            from_docker_config(&path, "quay.io").expect("readable"),
            None
        );
    }

    #[test]
    fn docker_hub_aliases_match() {
        let (_d, path) = config(r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}"#);
        assert!(
            from_docker_config(&path, "docker.io")
                .expect("readable")
                .is_some()
        );
    }

    #[test]
    fn malformed_entries_name_the_registry_not_the_secret() {
        let (_d, path) = config(r#"{"auths":{"r.example":{"auth":"bm9jb2xvbg=="}}}"#);
        let e = from_docker_config(&path, "r.example").expect_err("no colon");
        assert!(e.to_string().contains("auths.r.example.auth"), "{e}");
        assert!(!e.to_string().contains("nocolon"));
    }

    #[test]
    fn a_missing_file_means_anonymous() {
        assert_eq!(
            from_docker_config(std::path::Path::new("/nonexistent/config.json"), "x").expect("ok"),
            None
        );
    }
}
