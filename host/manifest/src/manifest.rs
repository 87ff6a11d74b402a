//! Reads a Spin manifest (version 2) into an [`App`].
//!
//! ping-host supports the subset of `spin.toml` that HTTP components with Redis
//! and variables use. Everything outside it is refused with an error naming the
//! manifest key, rather than silently ignored: a user who writes `files = [...]`
//! must not get an app that quietly runs without its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::app::{App, Component, HttpTrigger, Source, VariableDecl};
use crate::variables::{self, Template};

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid manifest {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error(
        "{path}: `spin_manifest_version = {found}` is not supported; ping-host reads manifest version 2"
    )]
    Version { path: PathBuf, found: String },
    #[error(
        "{path}: trigger type `{kind}` ([[trigger.{kind}]]) is not supported; ping-host runs HTTP triggers only"
    )]
    UnsupportedTrigger { path: PathBuf, kind: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: BTreeMap<String, toml::Value>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    version: Option<String>,
    description: Option<String>,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    trigger: BTreeMap<String, RawAppTrigger>,
}

/// `[application.trigger.http]`: only `base = "/"` (Spin's default) is meaningful here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppTrigger {
    base: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    description: Option<String>,
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    id: Option<String>,
    route: toml::Value,
    component: toml::Value,
    executor: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    description: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Used by `spin build`; ignored at run time, recorded when pushing.
    build: Option<toml::Value>,
}

/// Loads and validates `path`; component sources resolve against its directory.
pub fn load(path: &Path) -> Result<App, ManifestError> {
    load_with(path, true)
}

/// Like [`load`], but component source files need not exist yet: what
/// `push --build` needs to find the build commands that will create them.
pub fn load_unchecked_sources(path: &Path) -> Result<App, ManifestError> {
    load_with(path, false)
}

fn load_with(path: &Path, check_sources: bool) -> Result<App, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_with(&text, path, base, check_sources)
}

/// Parses manifest `text`; `path` is only used in messages.
pub fn parse(text: &str, path: &Path, base: &Path) -> Result<App, ManifestError> {
    parse_with(text, path, base, true)
}

fn parse_with(
    text: &str,
    path: &Path,
    base: &Path,
    check_sources: bool,
) -> Result<App, ManifestError> {
    let syntax = |e: toml::de::Error| ManifestError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    };
    let invalid = |key: String, message: String| ManifestError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };
    let raw: RawManifest = toml::from_str(text).map_err(syntax)?;

    match raw.spin_manifest_version.as_integer() {
        Some(2) => {}
        _ => {
            return Err(ManifestError::Version {
                path: path.to_owned(),
                found: raw.spin_manifest_version.to_string(),
            });
        }
    }
    for (kind, trigger) in &raw.application.trigger {
        if kind != "http" {
            return Err(ManifestError::UnsupportedTrigger {
                path: path.to_owned(),
                kind: kind.clone(),
            });
        }
        if let Some(base) = trigger.base.as_deref().filter(|b| *b != "/") {
            return Err(invalid(
                "application.trigger.http.base".into(),
                format!("`{base}` is not supported; only the default base `/` is"),
            ));
        }
    }

    let mut app_variables = BTreeMap::new();
    for (name, var) in raw.variables {
        let key = format!("variables.{name}");
        variables::check_name(&name).map_err(|e| invalid(key.clone(), e.to_string()))?;
        let default = match (var.default, var.required) {
            (Some(_), true) => {
                return Err(invalid(
                    key,
                    "set either `default` or `required = true`, not both".into(),
                ));
            }
            (None, false) => {
                return Err(invalid(
                    key,
                    "needs a `default` or `required = true`".into(),
                ));
            }
            (default, _) => default,
        };
        app_variables.insert(
            name,
            VariableDecl {
                description: var.description,
                default,
                secret: var.secret,
            },
        );
    }

    let mut components = BTreeMap::new();
    for (id, raw) in raw.component {
        let key = format!("component.{id}");
        check_id(&id).map_err(|m| invalid(key.clone(), m))?;
        let source = match raw.source.as_str() {
            Some(file) => {
                let full = base.join(file);
                if check_sources && !full.is_file() {
                    return Err(invalid(
                        format!("{key}.source"),
                        format!(
                            "file `{}` not found; build the component first (`make component`, or `spin build`)",
                            full.display()
                        ),
                    ));
                }
                Source::File(full)
            }
            None => {
                return Err(invalid(
                    format!("{key}.source"),
                    "only a local file path is supported (not a URL or registry source)".into(),
                ));
            }
        };
        for (i, host) in raw.allowed_outbound_hosts.iter().enumerate() {
            check_template(host, &app_variables)
                .map_err(|m| invalid(format!("{key}.allowed_outbound_hosts[{i}]"), m))?;
        }
        for (name, value) in &raw.variables {
            let var_key = format!("{key}.variables.{name}");
            variables::check_name(name).map_err(|e| invalid(var_key.clone(), e.to_string()))?;
            check_template(value, &app_variables).map_err(|m| invalid(var_key, m))?;
        }
        components.insert(
            id.clone(),
            Component {
                id,
                description: raw.description,
                source,
                allowed_outbound_hosts: raw.allowed_outbound_hosts,
                variables: raw.variables,
                build: raw
                    .build
                    .map(|b| serde_json::to_value(b).unwrap_or_default()),
            },
        );
    }

    let mut http_triggers = Vec::new();
    for (kind, value) in raw.trigger {
        if kind != "http" {
            return Err(ManifestError::UnsupportedTrigger {
                path: path.to_owned(),
                kind,
            });
        }
        let list: Vec<RawHttpTrigger> = value
            .try_into()
            .map_err(|e: toml::de::Error| invalid("trigger.http".into(), e.message().to_owned()))?;
        for (i, t) in list.into_iter().enumerate() {
            let key = format!("trigger.http[{i}]");
            let route = t
                .route
                .as_str()
                .ok_or_else(|| {
                    invalid(
                        format!("{key}.route"),
                        "must be a path string; private endpoints (`route = { private = true }`) are not supported".into(),
                    )
                })?
                .to_owned();
            crate::routing::check_route(&route).map_err(|m| invalid(format!("{key}.route"), m))?;
            let component = t
                .component
                .as_str()
                .ok_or_else(|| {
                    invalid(
                        format!("{key}.component"),
                        "must name a [component.<id>]; inline components are not supported".into(),
                    )
                })?
                .to_owned();
            if !components.contains_key(&component) {
                return Err(invalid(
                    format!("{key}.component"),
                    format!("no [component.{component}] is defined"),
                ));
            }
            if let Some(executor) = t.executor {
                let spin = executor.get("type").and_then(|t| t.as_str()) == Some("spin");
                if !spin {
                    return Err(invalid(
                        format!("{key}.executor"),
                        "only the default `spin` executor is supported".into(),
                    ));
                }
            }
            http_triggers.push(HttpTrigger {
                id: t.id.unwrap_or_default(),
                route,
                component,
            });
        }
    }
    assign_trigger_ids(&mut http_triggers);
    if http_triggers.is_empty() {
        return Err(invalid(
            "trigger.http".into(),
            "no [[trigger.http]] is defined, so there is nothing to serve".into(),
        ));
    }

    Ok(App {
        name: raw.application.name,
        version: raw.application.version,
        description: raw.application.description,
        authors: raw.application.authors,
        variables: app_variables,
        components,
        http_triggers,
    })
}

/// Gives every trigger without an `id` the one Spin would: `<component>-http-trigger`
/// for the first such trigger of a component, `http-trigger<N>` after that.
/// The ids end up in pushed artifacts, so they must match what `spin registry push` writes.
fn assign_trigger_ids(triggers: &mut [HttpTrigger]) {
    let mut taken: std::collections::HashSet<String> = triggers
        .iter()
        .map(|t| t.id.clone())
        .filter(|id| !id.is_empty())
        .collect();
    let mut counter = 1;
    for trigger in triggers.iter_mut().filter(|t| t.id.is_empty()) {
        let natural = format!("{}-http-trigger", trigger.component);
        trigger.id = if taken.contains(&natural) {
            loop {
                let id = format!("http-trigger{counter}");
                if !taken.contains(&id) {
                    break id;
                }
                counter += 1;
            }
        } else {
            natural
        };
        taken.insert(trigger.id.clone());
    }
}

/// Component ids follow Spin's rule: lower-case words of letters and digits joined by `-`.
fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.split('-').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a valid component id (lower-case letters and digits in words separated by `-`)"
        ))
    }
}

/// A template must parse and refer only to declared application variables.
fn check_template(text: &str, declared: &BTreeMap<String, VariableDecl>) -> Result<(), String> {
    let template = Template::parse(text).map_err(|e| e.to_string())?;
    match template.references().find(|r| !declared.contains_key(*r)) {
        Some(name) => Err(format!(
            "refers to `{{{{ {name} }}}}` but [variables] declares no `{name}`"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<App, ManifestError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("c.wasm"), b"\0asm").expect("write");
        parse(text, Path::new("spin.toml"), dir.path())
    }

    const GOOD: &str = r#"
spin_manifest_version = 2
[application]
name = "ping"
[variables]
redis_host = { default = "127.0.0.1" }
redis_password = { default = "", secret = true }
[[trigger.http]]
route = "/ping"
component = "ping"
[component.ping]
source = "c.wasm"
allowed_outbound_hosts = ["redis://{{ redis_host }}:6379"]
[component.ping.variables]
redis_host = "{{ redis_host }}"
[component.ping.build]
command = "cargo build"
"#;

    #[test]
    fn reads_the_supported_subset() {
        let app = parse_str(GOOD).expect("valid manifest");
        assert_eq!(app.name, "ping");
        assert_eq!(app.http_triggers[0].route, "/ping");
        assert!(app.variables["redis_password"].secret);
        assert_eq!(
            app.components["ping"].variables["redis_host"],
            "{{ redis_host }}"
        );
    }

    fn error_of(text: &str) -> String {
        parse_str(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn trigger_ids_are_generated_like_spin() {
        let three = GOOD.replace(
            "[component.ping]",
            "[[trigger.http]]\nroute = \"/a\"\ncomponent = \"ping\"\n[[trigger.http]]\nid = \"mine\"\nroute = \"/b\"\ncomponent = \"ping\"\n[component.ping]",
        );
        let app = parse_str(&three).expect("valid manifest");
        let ids: Vec<_> = app.http_triggers.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["ping-http-trigger", "http-trigger1", "mine"]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = error_of(&GOOD.replace(
            "[component.ping.build]",
            "files = [\"a\"]\n[component.ping.build]",
        ));
        assert!(e.contains("files"), "{e}");
    }

    #[test]
    fn other_trigger_types_are_refused_by_name() {
        let e = error_of(&format!(
            "{GOOD}\n[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"ping\"\n"
        ));
        assert!(e.contains("trigger type `redis`"), "{e}");
    }

    #[test]
    fn templates_must_name_declared_variables() {
        let e = error_of(&GOOD.replace("redis://{{ redis_host }}", "redis://{{ redis_hots }}"));
        assert!(
            e.contains("redis_hots") && e.contains("allowed_outbound_hosts[0]"),
            "{e}"
        );
    }

    #[test]
    fn variables_need_default_or_required() {
        let e = error_of(&GOOD.replace(
            "redis_host = { default = \"127.0.0.1\" }",
            "redis_host = { secret = true }",
        ));
        assert!(e.contains("variables.redis_host"), "{e}");
    }

    #[test]
    fn missing_source_file_names_the_file() {
        let e = error_of(&GOOD.replace("c.wasm", "missing.wasm"));
        assert!(
            e.contains("component.ping.source") && e.contains("missing.wasm"),
            "{e}"
        );
    }

    #[test]
    fn triggers_must_point_at_components() {
        let e = error_of(&GOOD.replace("component = \"ping\"", "component = \"pong\""));
        assert!(e.contains("no [component.pong]"), "{e}");
    }

    #[test]
    fn other_manifest_versions_are_refused() {
        let e =
            error_of(&GOOD.replace("spin_manifest_version = 2", "spin_manifest_version = \"1\""));
        assert!(e.contains("manifest version 2"), "{e}");
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let e = error_of("spin_manifest_version = 2\n[application\n");
        assert!(e.contains("line 2"), "{e}");
    }
}
