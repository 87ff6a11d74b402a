//! Ahead-of-time compilation, for read-only deployments such as the container
//! image: `ping-host precompile` compiles every component of an app once (at
//! image build time) into `<dir>/<sha256 of the Wasm>.cwasm`, and
//! `ping-host up --precompiled <dir>` loads that machine code instead of
//! compiling, so a start needs no compiler run and no writable cache.
//!
//! Files are named after the digest of the Wasm they were compiled from, so a
//! changed component can never run stale machine code: its digest has no file,
//! and the start fails saying so. wasmtime itself refuses a file compiled by
//! another wasmtime version, with other engine settings or for CPU features
//! this machine lacks (an image built on a newer CPU than the node's): then
//! the component is compiled in memory instead, with a warning, so the image
//! still runs anywhere, only its start is slower (~0.2 s of CPU).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{Engine, EngineOptions};
use crate::app::App;

/// The file extension of precompiled components.
pub const EXTENSION: &str = "cwasm";

/// The file under `dir` that holds the machine code compiled from `wasm`:
/// `<dir>/<lower-case hex sha256 of wasm>.cwasm`.
pub(crate) fn precompiled_path(dir: &Path, wasm: &[u8]) -> PathBuf {
    let digest = Sha256::digest(wasm);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.{EXTENSION}"))
}

/// Compiles every component of `app` with the engine `opts` describe (the
/// settings `ping-host up` uses by default) and writes each to
/// `<out>/<lower-case hex sha256 of its Wasm>.cwasm`, creating `out` if needed.
///
/// Returns `(component id, written file)` pairs, ordered by component id.
///
/// # Errors
///
/// A component whose Wasm cannot be read, is not a WebAssembly file or does
/// not compile; `out` not creatable or a file not writable. Each error names
/// the component or the path.
pub fn precompile(app: &App, opts: &EngineOptions, out: &Path) -> Result<Vec<(String, PathBuf)>> {
    let opts = EngineOptions {
        cache_dir: None,
        precompiled: None,
        ..opts.clone()
    };
    let engine = Engine::new(&opts)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    for (id, spec) in &app.components {
        let wasm = spec
            .source
            .load()
            .with_context(|| format!("component `{id}`: cannot read {}", spec.source))?;
        if !wasm.starts_with(b"\0asm") {
            bail!(
                "component `{id}`: {} is not a WebAssembly file",
                spec.source
            );
        }
        let code = engine
            .engine_for(&wasm)?
            .precompile_component(&wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component `{id}`: cannot compile it"))?;
        let path = precompiled_path(out, &wasm);
        // Write then rename, so a reader never sees half a file.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, &code)
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push((id.clone(), path));
    }
    Ok(written)
}

impl Engine {
    /// The machine code `ping-host precompile` wrote under `dir` for `wasm`.
    ///
    /// A file wasmtime refuses (another wasmtime version, other engine
    /// settings, CPU features this machine lacks) is logged and the Wasm is
    /// compiled in memory instead; nothing is written.
    ///
    /// # Errors
    ///
    /// No file for this Wasm's digest (the component changed since it was
    /// precompiled, or it never was), saying how to fix it; or the Wasm does
    /// not compile.
    pub(super) fn load_precompiled(
        &self,
        engine: &wasmtime::Engine,
        dir: &Path,
        id: &str,
        wasm: &[u8],
    ) -> Result<Component> {
        let path = precompiled_path(dir, wasm);
        if !path.is_file() {
            bail!(
                "component `{id}`: --precompiled {}: no {} for this Wasm (it changed since \
                 `ping-host precompile` ran, or was never precompiled): run \
                 `ping-host precompile --out-dir {}` again, or drop --precompiled",
                dir.display(),
                path.file_name().unwrap_or_default().to_string_lossy(),
                dir.display(),
            );
        }
        // SAFETY: deserializing trusts the file to be machine code wasmtime
        // wrote. It is found only under the directory the operator named, by
        // the digest of the Wasm being run, and wasmtime checks its header
        // (version, engine settings) before using it. The image keeps that
        // directory root-owned and read-only; never point --precompiled at a
        // directory someone else can write.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                tracing::info!(component = id, file = %path.display(), "loaded precompiled code");
                Ok(component)
            }
            Err(e) => {
                tracing::warn!(
                    component = id,
                    file = %path.display(),
                    "precompiled code unusable here ({e:#}); compiling in memory instead. \
                     Run `ping-host precompile` with this ping-host on a CPU like this one \
                     to start faster"
                );
                Component::new(engine, wasm)
                    .map_err(anyhow::Error::from)
                    .with_context(|| format!("component `{id}`: cannot compile it"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::app::{Component as Spec, Source};

    fn app_with(wasm: &[u8]) -> App {
        let spec = Spec {
            id: "c".into(),
            description: None,
            source: Source::Bytes(Arc::from(wasm)),
            allowed_outbound_hosts: Vec::new(),
            variables: BTreeMap::new(),
            environment: BTreeMap::new(),
            build: None,
        };
        App {
            name: "t".into(),
            version: None,
            description: None,
            authors: Vec::new(),
            variables: BTreeMap::new(),
            components: BTreeMap::from([("c".to_owned(), spec)]),
            http_triggers: Vec::new(),
        }
    }

    fn small_engine(precompiled: Option<PathBuf>) -> (EngineOptions, Engine) {
        let opts = EngineOptions {
            max_instances: 4,
            precompiled,
            ..EngineOptions::default()
        };
        let engine = Engine::new(&opts).unwrap();
        (opts, engine)
    }

    #[test]
    fn precompiled_code_loads_only_for_the_same_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str("(component)").unwrap();
        let (opts, engine) = small_engine(Some(dir.path().to_owned()));
        let written = precompile(&app_with(&wasm), &opts, dir.path()).unwrap();
        assert_eq!(
            written,
            vec![("c".to_owned(), precompiled_path(dir.path(), &wasm))]
        );
        let p2 = engine.engine_for(&wasm).unwrap();
        engine.load_precompiled(p2, dir.path(), "c", &wasm).unwrap();

        // Another Wasm has no file: the error says how to fix it.
        let other = wat::parse_str("(component (core module))").unwrap();
        let err = engine
            .load_precompiled(p2, dir.path(), "c", &other)
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("run `ping-host precompile"),
            "{err:#}"
        );

        // A file that is not wasmtime's machine code is never run: the Wasm
        // is compiled in memory instead.
        std::fs::write(precompiled_path(dir.path(), &wasm), b"not machine code").unwrap();
        engine.load_precompiled(p2, dir.path(), "c", &wasm).unwrap();
    }

    #[test]
    fn precompile_refuses_what_is_not_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let (opts, _) = small_engine(None);
        let err = precompile(&app_with(b"#!/bin/sh"), &opts, dir.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a WebAssembly file"),
            "{err:#}"
        );
    }

    #[test]
    fn path_is_named_by_the_wasm_digest() {
        let p = precompiled_path(Path::new("/c"), b"");
        assert_eq!(
            p,
            Path::new("/c/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.cwasm")
        );
        assert_ne!(precompiled_path(Path::new("/c"), b"a"), p);
    }
}
