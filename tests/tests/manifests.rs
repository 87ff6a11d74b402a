//! Bad manifests and unsupported components stop start-up with a clear message.

use ping_e2e::{HostConfig, fixture, write_manifest};

fn start_with(text: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let manifest = write_manifest(dir.path(), text)?;
    let (status, stderr) = HostConfig::default().manifest(manifest).run_to_exit()?;
    assert!(!status.success(), "start-up must fail: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    Ok(stderr)
}

#[test]
fn toml_syntax_errors_point_at_the_line() -> anyhow::Result<()> {
    let stderr = start_with("spin_manifest_version = 2\n[application\nname = \"x\"\n")?;
    assert!(
        stderr.contains("invalid manifest") && stderr.contains("line 2"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_missing_component_file_is_named() -> anyhow::Result<()> {
    let stderr = start_with(&fixture("minimal")?.replace("@WASM@", "nowhere/ping.wasm"))?;
    assert!(
        stderr.contains("component.ping.source") && stderr.contains("nowhere/ping.wasm"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn unsupported_trigger_types_are_refused() -> anyhow::Result<()> {
    let stderr = start_with(&format!(
        "{}[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"ping\"\n",
        fixture("minimal")?
    ))?;
    assert!(
        stderr.contains("trigger type `redis`") && stderr.contains("HTTP triggers only"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn unsupported_keys_are_named() -> anyhow::Result<()> {
    let stderr = start_with(&format!("{}files = [\"static/\"]\n", fixture("minimal")?))?;
    assert!(stderr.contains("files"), "{stderr}");
    Ok(())
}

#[test]
fn a_missing_manifest_is_reported() -> anyhow::Result<()> {
    let (status, stderr) = HostConfig::default()
        .manifest("/nonexistent/spin.toml")
        .run_to_exit()?;
    assert!(!status.success());
    assert!(
        stderr.contains("cannot read manifest /nonexistent/spin.toml"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_component_importing_an_unsupported_interface_is_rejected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // A tiny real component that needs Spin's key-value store, which ping-host does not provide.
    let wasm = wat::parse_str(
        r#"(component
             (import "fermyon:spin/key-value@2.0.0" (instance
               (export "exists" (func (param "key" string) (result bool))))))"#,
    )?;
    let path = dir.path().join("kv.wasm");
    std::fs::write(&path, wasm)?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        fixture("minimal")?.replace("@WASM@", &path.display().to_string()),
    )?;
    let (status, stderr) = HostConfig::default().manifest(manifest).run_to_exit()?;
    assert!(!status.success());
    assert!(stderr.contains("fermyon:spin/key-value@2.0.0"), "{stderr}");
    assert!(stderr.contains("does not provide"), "{stderr}");
    Ok(())
}
