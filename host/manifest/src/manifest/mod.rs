//! Reads a Spin manifest (version 2) into an [`App`].
//!
//! ping-host supports the subset of `spin.toml` that HTTP components with Redis
//! and variables use. Everything outside it is refused with an error naming the
//! manifest key, rather than silently ignored: a user who writes `files = [...]`
//! must not get an app that quietly runs without its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod schema;

use self::schema::{RawAppTrigger, RawComponent, RawHttpTrigger, RawManifest, RawVariable};
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
    let cx = Cx {
        path,
        base,
        check_sources,
    };
    let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    cx.check_version(&raw.spin_manifest_version)?;
    let base = cx.check_app_triggers(&raw.application.trigger)?;
    let variables = cx.parse_variables(raw.variables)?;
    let components = raw
        .component
        .into_iter()
        .map(|(id, c)| Ok((id.clone(), cx.parse_component(id, c, &variables)?)))
        .collect::<Result<BTreeMap<_, _>, ManifestError>>()?;
    let mut http_triggers = cx.parse_triggers(raw.trigger, &components)?;
    for t in &mut http_triggers {
        t.base.clone_from(&base);
    }
    Ok(App {
        name: raw.application.name,
        version: raw.application.version,
        description: raw.application.description,
        authors: raw.application.authors,
        variables,
        components,
        http_triggers,
    })
}

/// What every section's parser needs: where the manifest is, for messages
/// and for resolving component sources.
struct Cx<'a> {
    path: &'a Path,
    base: &'a Path,
    check_sources: bool,
}

impl Cx<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            path: self.path.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn unsupported_trigger(&self, kind: &str) -> ManifestError {
        ManifestError::UnsupportedTrigger {
            path: self.path.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// `spin_manifest_version = 2`.
    fn check_version(&self, version: &toml::Value) -> Result<(), ManifestError> {
        match version.as_integer() {
            Some(2) => Ok(()),
            _ => Err(ManifestError::Version {
                path: self.path.to_owned(),
                found: version.to_string(),
            }),
        }
    }

    /// `[application.trigger.*]`: HTTP only; its `base` (default `/`).
    fn check_app_triggers(
        &self,
        triggers: &BTreeMap<String, RawAppTrigger>,
    ) -> Result<String, ManifestError> {
        let mut base = "/".to_owned();
        for (kind, trigger) in triggers {
            if kind != "http" {
                return Err(self.unsupported_trigger(kind));
            }
            if let Some(b) = &trigger.base {
                if !b.starts_with('/') || b.contains(['?', '#', ':']) || b.contains("...") {
                    return Err(self.invalid(
                        "application.trigger.http.base",
                        format!("`{b}` must be a plain path starting with `/`, like `/api`"),
                    ));
                }
                base.clone_from(b);
            }
        }
        Ok(base)
    }

    /// `[variables]`: valid names, each with a `default` or `required = true`.
    fn parse_variables(
        &self,
        raw: BTreeMap<String, RawVariable>,
    ) -> Result<BTreeMap<String, VariableDecl>, ManifestError> {
        let mut declared = BTreeMap::new();
        for (name, var) in raw {
            let key = format!("variables.{name}");
            variables::check_name(&name).map_err(|e| self.invalid(&key, e.to_string()))?;
            let default = match (var.default, var.required) {
                (Some(_), true) => {
                    return Err(
                        self.invalid(key, "set either `default` or `required = true`, not both")
                    );
                }
                (None, false) => {
                    return Err(self.invalid(key, "needs a `default` or `required = true`"));
                }
                (default, _) => default,
            };
            let decl = VariableDecl {
                description: var.description,
                default,
                secret: var.secret,
            };
            declared.insert(name, decl);
        }
        Ok(declared)
    }

    /// One `[component.<id>]`: its id, source, allow-list, variables and environment.
    fn parse_component(
        &self,
        id: String,
        raw: RawComponent,
        declared: &BTreeMap<String, VariableDecl>,
    ) -> Result<Component, ManifestError> {
        let key = format!("component.{id}");
        check_id(&id).map_err(|m| self.invalid(&key, m))?;
        for (name, value) in &raw.unsupported {
            let asks_nothing = match value {
                toml::Value::Array(a) => a.is_empty(),
                toml::Value::Table(t) => t.is_empty(),
                toml::Value::Boolean(b) => !b,
                _ => false,
            };
            match schema::UNSUPPORTED_COMPONENT_KEYS
                .iter()
                .find(|(k, _)| k == name)
            {
                Some(_) if asks_nothing => {}
                Some((_, what)) => {
                    return Err(self.invalid(
                        format!("{key}.{name}"),
                        format!("is not supported by ping-host ({what})"),
                    ));
                }
                None => {
                    return Err(self.invalid(
                        format!("{key}.{name}"),
                        "unknown key (ping-host reads source, description, allowed_outbound_hosts, variables, environment, build and tool)",
                    ));
                }
            }
        }
        let source = self.parse_source(&key, &raw.source)?;
        for (i, host) in raw.allowed_outbound_hosts.iter().enumerate() {
            check_template(host, declared)
                .map_err(|m| self.invalid(format!("{key}.allowed_outbound_hosts[{i}]"), m))?;
        }
        for (name, value) in &raw.variables {
            let var_key = format!("{key}.variables.{name}");
            variables::check_name(name).map_err(|e| self.invalid(&var_key, e.to_string()))?;
            check_template(value, declared).map_err(|m| self.invalid(var_key, m))?;
        }
        Ok(Component {
            id,
            description: raw.description,
            source,
            allowed_outbound_hosts: raw.allowed_outbound_hosts,
            variables: raw.variables,
            environment: raw.environment,
            build: raw
                .build
                .map(|b| serde_json::to_value(b).unwrap_or_default()),
        })
    }

    /// `source = "path.wasm"`, resolved against the manifest's directory.
    fn parse_source(&self, key: &str, source: &toml::Value) -> Result<Source, ManifestError> {
        let Some(file) = source.as_str() else {
            return Err(self.invalid(
                format!("{key}.source"),
                "only a local file path is supported (not a URL or registry source)",
            ));
        };
        let full = self.base.join(file);
        if self.check_sources && !full.is_file() {
            return Err(self.invalid(
                format!("{key}.source"),
                format!(
                    "file `{}` not found; build the component first (`make component`, or `spin build`)",
                    full.display()
                ),
            ));
        }
        Ok(Source::File(full))
    }

    /// `[[trigger.http]]`: at least one, each naming a defined component.
    fn parse_triggers(
        &self,
        raw: BTreeMap<String, toml::Value>,
        components: &BTreeMap<String, Component>,
    ) -> Result<Vec<HttpTrigger>, ManifestError> {
        let mut triggers = Vec::new();
        for (kind, value) in raw {
            if kind != "http" {
                return Err(self.unsupported_trigger(&kind));
            }
            let list: Vec<RawHttpTrigger> = value
                .try_into()
                .map_err(|e: toml::de::Error| self.invalid("trigger.http", e.message()))?;
            for (i, t) in list.into_iter().enumerate() {
                triggers.push(self.parse_http_trigger(
                    &format!("trigger.http[{i}]"),
                    t,
                    components,
                )?);
            }
        }
        assign_trigger_ids(&mut triggers);
        if triggers.is_empty() {
            return Err(self.invalid(
                "trigger.http",
                "no [[trigger.http]] is defined, so there is nothing to serve",
            ));
        }
        Ok(triggers)
    }

    fn parse_http_trigger(
        &self,
        key: &str,
        t: RawHttpTrigger,
        components: &BTreeMap<String, Component>,
    ) -> Result<HttpTrigger, ManifestError> {
        let route = t.route.as_str().ok_or_else(|| {
            self.invalid(
                format!("{key}.route"),
                "must be a path string; private endpoints (`route = { private = true }`) are not supported",
            )
        })?;
        crate::routing::check_route(route).map_err(|m| self.invalid(format!("{key}.route"), m))?;
        let component = t.component.as_str().ok_or_else(|| {
            self.invalid(
                format!("{key}.component"),
                "must name a [component.<id>]; inline components are not supported",
            )
        })?;
        if !components.contains_key(component) {
            return Err(self.invalid(
                format!("{key}.component"),
                format!("no [component.{component}] is defined"),
            ));
        }
        let executor = t
            .executor
            .as_ref()
            .map(|e| e.get("type").and_then(|t| t.as_str()));
        if executor.is_some_and(|kind| kind != Some("spin")) {
            return Err(self.invalid(
                format!("{key}.executor"),
                "only the default `spin` executor is supported",
            ));
        }
        Ok(HttpTrigger {
            id: t.id.unwrap_or_default(),
            route: route.to_owned(),
            component: component.to_owned(),
            base: "/".to_owned(),
        })
    }
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
    //! Refusals are golden files in `tests/ui/` (see `tests/ui.rs`); these
    //! check what a valid manifest turns into.
    use super::*;

    const GOOD: &str = include_str!("../../tests/ui/valid/ping.toml");

    fn parse_str(text: &str) -> Result<App, ManifestError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("c.wasm"), b"\0asm").expect("write");
        parse(text, Path::new("spin.toml"), dir.path())
    }

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

    #[test]
    fn environment_is_read_as_written() {
        let with_env = GOOD.replace(
            "[component.ping]",
            "[component.ping]\nenvironment = { GREETING = \"hi {{ x }}\", EMPTY = \"\" }",
        );
        let app = parse_str(&with_env).expect("valid manifest");
        let env = &app.components["ping"].environment;
        assert_eq!(
            env["GREETING"], "hi {{ x }}",
            "no template expansion, as in Spin"
        );
        assert_eq!(env["EMPTY"], "");
        assert!(
            parse_str(GOOD).expect("valid").components["ping"]
                .environment
                .is_empty()
        );
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
}
