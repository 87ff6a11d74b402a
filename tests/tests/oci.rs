//! Spin OCI artifacts against a real registry (Debian's docker-registry):
//! push, inspect what the registry stores, pull and run, credentials, failures.

use std::path::Path;

use ping_e2e::{Host, HostConfig, Redis, Registry, component_wasm, get, ping_host, root};
use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
const LOCKED_APP: &str = "application/vnd.fermyon.spin.application.v1+config";

/// An empty Docker config, so the developer's own credentials never leak into a test.
fn clean_env(dir: &Path) -> Vec<(String, String)> {
    vec![("DOCKER_CONFIG".into(), dir.display().to_string())]
}

fn push(
    reference: &str,
    extra: &[&str],
    env: &[(String, String)],
    stdin: Option<&str>,
) -> anyhow::Result<std::process::Output> {
    let manifest = root().join("spin.toml");
    let mut args = vec![
        "push",
        reference,
        "--manifest",
        manifest.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ping_host(&args, &env, stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Pushes and returns the pinned reference printed on stdout.
fn push_ok(reference: &str, extra: &[&str], env: &[(String, String)]) -> anyhow::Result<String> {
    let out = push(reference, extra, env, None)?;
    anyhow::ensure!(out.status.success(), "push failed: {}", text(&out.stderr));
    Ok(text(&out.stdout).trim().to_owned())
}

fn json(resp: reqwest::blocking::Response) -> anyhow::Result<Value> {
    anyhow::ensure!(
        resp.status().is_success(),
        "registry answered {}",
        resp.status()
    );
    Ok(serde_json::from_slice(&resp.bytes()?)?)
}

fn manifest(registry: &Registry, tag: &str) -> anyhow::Result<Value> {
    json(registry.get(&format!("ping/manifests/{tag}"), Some(OCI_MANIFEST), None)?)
}

/// The OCI digest of `bytes`, computed independently of ping-host.
fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn push_pull_and_serve_from_the_registry() -> anyhow::Result<()> {
    let registry = Registry::start(None)?;
    let docker = tempfile::tempdir()?;
    let pinned = push_ok(
        &format!("{}/ping:v1", registry.host()),
        &[],
        &clean_env(docker.path()),
    )?;
    let (repo, digest) = pinned.split_once('@').expect("REPO@DIGEST on stdout");
    assert_eq!(repo, format!("{}/ping", registry.host()));
    let served = registry.get("ping/manifests/v1", Some(OCI_MANIFEST), None)?;
    assert_eq!(
        served
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(digest),
        "the printed digest is the one the registry serves"
    );

    let redis = Redis::start()?;
    let cache = tempfile::tempdir()?;
    let config = HostConfig::for_redis(&redis)
        .from_registry(pinned.clone())
        .cache_dir(cache.path())
        .envs(&clean_env(docker.path()));
    let host = Host::start(&config)?;
    assert_eq!(get(&host.url("/ping"))?.body, "1\n");
    assert_eq!(get(&host.url("/ping"))?.body, "2\n");
    assert_eq!(redis.counter("ping")?, 2, "the pulled app counts in Redis");
    let info = get(&host.url("/.well-known/spin/info"))?;
    assert!(info.body.contains(digest), "{}", info.body);
    Ok(())
}

#[test]
fn the_artifact_has_spins_media_types_labels_and_annotations() -> anyhow::Result<()> {
    let registry = Registry::start(None)?;
    let docker = tempfile::tempdir()?;
    let mut env = clean_env(docker.path());
    env.push((
        "SPIN_VARIABLE_REDIS_PASSWORD".into(),
        "never-in-the-artifact".into(),
    ));
    push_ok(
        &format!("{}/ping:v1", registry.host()),
        &[
            "--annotation",
            "org.opencontainers.image.title=custom-title",
            "--annotation",
            "com.example.team=platform",
        ],
        &env,
    )?;

    let resp = registry.get("ping/manifests/v1", Some(OCI_MANIFEST), None)?;
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some(OCI_MANIFEST)
    );
    let m = json(resp)?;
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = m["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2);
    let wasm = std::fs::read(component_wasm())?;
    assert_eq!(layers[0]["mediaType"], WASM_LAYER);
    assert_eq!(
        layers[0]["digest"],
        sha256(&wasm),
        "the Wasm layer is the built component, byte for byte"
    );
    assert_eq!(layers[0]["size"], wasm.len());
    assert_eq!(layers[1]["mediaType"], LOCKED_APP);

    let a = &m["annotations"];
    assert_eq!(
        a["org.opencontainers.image.title"], "custom-title",
        "user annotations win"
    );
    assert_eq!(a["com.example.team"], "platform");
    assert_eq!(a["org.opencontainers.image.version"], "0.1.0");
    assert_eq!(
        a["org.opencontainers.image.description"],
        "GET /ping counts pings in Redis"
    );
    assert_eq!(a["org.opencontainers.image.authors"], "ping maintainers");
    let created = a["org.opencontainers.image.created"]
        .as_str()
        .expect("created");
    assert!(
        created.len() >= 20 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
        "RFC 3339: {created}"
    );

    let config = json(registry.get(
        &format!(
            "ping/blobs/{}",
            m["config"]["digest"].as_str().expect("digest")
        ),
        None,
        None,
    )?)?;
    assert_eq!(
        (config["architecture"].as_str(), config["os"].as_str()),
        (Some("wasm"), Some("wasip1"))
    );
    assert_eq!(
        config["config"]["Labels"]["com.fermyon.spin.lockedAppDigest"],
        layers[1]["digest"]
    );
    assert_eq!(
        config["rootfs"],
        serde_json::json!({"type": "layers", "diff_ids": []})
    );

    let locked_bytes = registry
        .get(
            &format!(
                "ping/blobs/{}",
                layers[1]["digest"].as_str().expect("digest")
            ),
            None,
            None,
        )?
        .bytes()?;
    assert!(
        !text(&locked_bytes).contains("never-in-the-artifact"),
        "variable values are not pushed"
    );
    let locked: Value = serde_json::from_slice(&locked_bytes)?;
    assert_eq!(locked["spin_lock_version"], 0);
    assert_eq!(locked["metadata"]["name"], "ping");
    assert_eq!(
        locked["metadata"]["trigger"],
        serde_json::json!({"type": "http"})
    );
    assert_eq!(
        locked["variables"]["redis_password"],
        serde_json::json!({"default": "", "secret": true})
    );
    let component = &locked["components"][0];
    assert_eq!(
        component["source"],
        serde_json::json!({"content_type": "application/wasm", "digest": sha256(&wasm)})
    );
    assert_eq!(
        component["metadata"]["allowed_outbound_hosts"],
        serde_json::json!(["redis://{{ redis_host }}:{{ redis_port }}"]),
        "templates are kept"
    );
    assert_eq!(
        component["config"]["redis_password"],
        "{{ redis_password }}"
    );
    let triggers = locked["triggers"].as_array().expect("triggers");
    assert_eq!(triggers[0]["id"], "ping-http-trigger");
    assert_eq!(triggers[1]["id"], "http-trigger1");
    assert_eq!(
        triggers[0]["trigger_config"],
        serde_json::json!({"component": "ping", "route": "/"})
    );
    Ok(())
}

#[test]
fn same_build_same_digests_changed_component_new_ones() -> anyhow::Result<()> {
    let registry = Registry::start(None)?;
    let docker = tempfile::tempdir()?;
    let env = clean_env(docker.path());
    push_ok(&format!("{}/ping:a", registry.host()), &[], &env)?;
    push_ok(&format!("{}/ping:b", registry.host()), &[], &env)?;
    let (a, b) = (manifest(&registry, "a")?, manifest(&registry, "b")?);
    assert_eq!(a["layers"], b["layers"], "layer digests are reproducible");
    assert_eq!(a["config"], b["config"]);

    // The same component plus one custom section: a different, still valid, component.
    let dir = tempfile::tempdir()?;
    let mut wasm = std::fs::read(component_wasm())?;
    wasm.extend_from_slice(&[0x00, 0x03, 0x01, b'x', b'1']);
    let changed = dir.path().join("changed.wasm");
    std::fs::write(&changed, &wasm)?;
    let text = std::fs::read_to_string(root().join("spin.toml"))?.replace(
        "target/wasm32-wasip2/wasm/ping_component.wasm",
        changed.to_str().expect("utf-8"),
    );
    std::fs::write(dir.path().join("spin.toml"), text)?;
    let out = ping_host(
        &[
            "push",
            &format!("{}/ping:c", registry.host()),
            "--manifest",
            dir.path().join("spin.toml").to_str().expect("utf-8"),
        ],
        &[("DOCKER_CONFIG", docker.path().to_str().expect("utf-8"))],
        None,
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = manifest(&registry, "c")?;
    assert_ne!(
        c["layers"][0]["digest"], a["layers"][0]["digest"],
        "new Wasm digest"
    );
    assert_eq!(c["layers"][0]["digest"], sha256(&wasm));
    assert_ne!(
        c["config"]["digest"], a["config"]["digest"],
        "new config digest"
    );
    Ok(())
}

#[test]
fn a_registry_with_htpasswd_needs_credentials() -> anyhow::Result<()> {
    let registry = Registry::start(Some(("ping", "hunter2-pw")))?;
    let reference = format!("{}/ping:v1", registry.host());
    let docker = tempfile::tempdir()?;
    let env = clean_env(docker.path());

    let anonymous = push(&reference, &[], &env, None)?;
    assert!(!anonymous.status.success());
    let stderr = text(&anonymous.stderr);
    assert!(
        stderr.contains("401") && stderr.contains(&registry.host()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let wrong = push(
        &reference,
        &["--username", "ping", "--password-stdin"],
        &env,
        Some("not-it-123\n"),
    )?;
    assert!(!wrong.status.success());
    assert!(
        !text(&wrong.stderr).contains("not-it-123"),
        "the password is never echoed"
    );

    let ok = push(
        &reference,
        &["--username", "ping", "--password-stdin"],
        &env,
        Some("hunter2-pw\n"),
    )?;
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(
        registry
            .get(
                "ping/manifests/v1",
                Some(OCI_MANIFEST),
                Some(("ping", "hunter2-pw"))
            )?
            .status()
            .is_success()
    );

    // The Docker config file works too, for push and for pull.
    let creds = format!(
        r#"{{"auths":{{"{}":{{"auth":"cGluZzpodW50ZXIyLXB3"}}}}}}"#,
        registry.host()
    );
    std::fs::write(docker.path().join("config.json"), creds)?;
    let from_config = push(&format!("{}/ping:v2", registry.host()), &[], &env, None)?;
    assert!(
        from_config.status.success(),
        "{}",
        text(&from_config.stderr)
    );
    let redis = Redis::start()?;
    let config = HostConfig::for_redis(&redis)
        .from_registry(format!("{}/ping:v2", registry.host()))
        .envs(&env);
    let host = Host::start(&config)?;
    assert_eq!(get(&host.url("/ping"))?.body, "1\n");
    Ok(())
}

#[test]
fn failures_are_clear_and_leave_no_half_written_cache() -> anyhow::Result<()> {
    let docker = tempfile::tempdir()?;
    let env = clean_env(docker.path());

    let nowhere = format!("127.0.0.1:{}", ping_e2e::free_port());
    let out = push(&format!("{nowhere}/ping:v1"), &[], &env, None)?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("cannot reach registry {nowhere}")),
        "{}",
        text(&out.stderr)
    );

    let registry = Registry::start(None)?;
    let cache = tempfile::tempdir()?;
    let pull = |reference: String| {
        HostConfig::default()
            .from_registry(reference)
            .cache_dir(cache.path())
            .envs(&env)
            .run_to_exit()
    };
    let (status, stderr) = pull(format!("{}/ping:missing", registry.host()))?;
    assert!(!status.success());
    assert!(stderr.contains("ping:missing was not found"), "{stderr}");

    push_ok(&format!("{}/ping:v1", registry.host()), &[], &env)?;
    let wasm_digest = manifest(&registry, "v1")?["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let stored = registry.blob_path(&wasm_digest);
    let mut bytes = std::fs::read(&stored)?;
    bytes[1000] ^= 0xff; // same size, different content
    std::fs::write(&stored, bytes)?;
    let (status, stderr) = pull(format!("{}/ping:v1", registry.host()))?;
    assert!(!status.success());
    assert!(stderr.contains("does not match its digest"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let blobs = cache.path().join("oci/blobs/sha256");
    let cached: Vec<String> = std::fs::read_dir(&blobs)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !cached.iter().any(|f| wasm_digest.ends_with(f.as_str())),
        "the corrupt blob was not cached: {cached:?}"
    );
    assert!(
        !cached.iter().any(|f| f.contains(".tmp")),
        "no temporary files left: {cached:?}"
    );
    Ok(())
}
