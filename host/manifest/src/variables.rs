//! Spin variables: names, `{{ name }}` templates, and resolving values with
//! Spin's precedence (`--variable` > `SPIN_VARIABLE_<NAME>` > manifest default).
//!
//! Everything is resolved once at start-up, as Spin does, so a missing required
//! variable stops the host before it serves anything and a request never pays
//! for template expansion.

use std::collections::{BTreeMap, HashMap};

use crate::app::{App, VariableDecl};

/// Why variables could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VariableError {
    #[error(
        "`{0}` is not a valid variable name: use lower-case letters, digits and `_`, starting with a letter"
    )]
    InvalidName(String),
    #[error("unterminated `{{{{` in template `{0}`")]
    Unterminated(String),
    #[error("empty `{{{{ }}}}` in template `{0}`")]
    EmptyReference(String),
    #[error(
        "variable `{name}` is required but has no value: pass `--variable {name}=...` or set {env}"
    )]
    Missing { name: String, env: String },
    #[error(
        "--variable `{0}`: expected NAME=VALUE, NAME=@FILE, or @FILE.toml / @FILE.json for many"
    )]
    BadOverride(String),
    #[error("--variable `{name}`: the manifest declares no such variable (declared: {declared})")]
    UnknownOverride { name: String, declared: String },
    #[error("--variable `{name}`: cannot read {file}: {reason}")]
    OverrideFile {
        name: String,
        file: String,
        reason: String,
    },
    #[error("--variable `@{file}`: {reason}")]
    VariablesFile { file: String, reason: String },
    #[error("{file} line {line}: {reason}")]
    DotEnv {
        file: String,
        line: usize,
        reason: String,
    },
}

/// Spin's rule for variable names.
pub fn check_name(name: &str) -> Result<(), VariableError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(VariableError::InvalidName(name.to_owned()))
    }
}

/// The environment variable Spin reads for variable `name`.
pub fn env_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// `--variable @FILE` as Spin 3.6 reads it: a `.json` or `.toml` file holding
/// a table of `name = "value"` strings.
fn variables_file(file: &str) -> Result<BTreeMap<String, String>, VariableError> {
    let err = |reason: String| VariableError::VariablesFile {
        file: file.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(format!("cannot read it: {e}")))?;
    match std::path::Path::new(file).extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text)
            .map_err(|e| err(format!("not a JSON object of strings: {e}"))),
        Some("toml") => {
            toml::from_str(&text).map_err(|e| err(format!("not a TOML table of strings: {e}")))
        }
        _ => Err(err(
            "variable files must end in .json or .toml (for one value from a file, write NAME=@FILE)"
                .into(),
        )),
    }
}

/// A `.env` file's assignments, the fallback Spin 3.6 uses after the process
/// environment for `SPIN_VARIABLE_*` (read from the working directory).
/// Lines are `NAME=value`, optionally after `export `; blank lines and `#`
/// comments are skipped; values may be 'single-quoted' (literal),
/// "double-quoted" (with `\n`, `\"`, `\\` escapes) or bare (trimmed, up to a
/// ` #` comment). `$` substitution, which Spin's dotenv parser performs, is
/// refused with the line number rather than read differently.
#[derive(Debug, Default, Clone)]
pub struct DotEnv(HashMap<String, String>);

impl DotEnv {
    /// Reads `path`; a missing file is an empty one, as under Spin.
    pub fn load(path: &std::path::Path) -> Result<Self, VariableError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DotEnv::default()),
            Err(e) => Err(VariableError::DotEnv {
                file: path.display().to_string(),
                line: 0,
                reason: e.to_string(),
            }),
        }
    }

    /// Parses `.env` text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, VariableError> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let err = |reason: &str| VariableError::DotEnv {
                file: file.to_owned(),
                line: i + 1,
                reason: reason.to_owned(),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, raw) = line
                .split_once('=')
                .ok_or_else(|| err("expected NAME=value"))?;
            let key = key.trim();
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(err("expected NAME=value"));
            }
            let raw = raw.trim();
            let value = if let Some(rest) = raw.strip_prefix('\'') {
                rest.strip_suffix('\'')
                    .ok_or_else(|| err("unterminated '"))?
                    .to_owned()
            } else if let Some(rest) = raw.strip_prefix('"') {
                let inner = rest
                    .strip_suffix('"')
                    .ok_or_else(|| err("unterminated \""))?;
                if inner.contains('$') {
                    return Err(err(
                        "`$` substitution is not supported by ping-host; single-quote the value",
                    ));
                }
                let mut out = String::new();
                let mut chars = inner.chars();
                while let Some(c) = chars.next() {
                    out.push(match (c, c == '\\') {
                        (_, true) => match chars.next() {
                            Some('n') => '\n',
                            Some(other) => other,
                            None => return Err(err("a value ends in `\\`")),
                        },
                        (c, false) => c,
                    });
                }
                out
            } else {
                let bare = raw.split(" #").next().unwrap_or("").trim_end();
                if bare.contains('$') {
                    return Err(err(
                        "`$` substitution is not supported by ping-host; single-quote the value",
                    ));
                }
                bare.to_owned()
            };
            // A later assignment of a name replaces an earlier one, as in Spin.
            map.insert(key.to_owned(), value);
        }
        Ok(DotEnv(map))
    }

    /// The value assigned to `name`, if any.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// A string with `{{ name }}` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Reference(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, VariableError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| VariableError::Unterminated(text.to_owned()))?;
            let name = after[..end].trim();
            if name.is_empty() {
                return Err(VariableError::EmptyReference(text.to_owned()));
            }
            check_name(name)?;
            parts.push(Part::Reference(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template(parts))
    }

    /// The variable names this template refers to.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Reference(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Expands the template; the manifest check guarantees every reference resolves.
    fn render(&self, values: &HashMap<String, String>) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_str(),
                Part::Reference(name) => values.get(name).map_or("", String::as_str),
            })
            .collect()
    }
}

/// Application variable values after precedence is applied.
#[derive(Clone)]
pub struct Resolved {
    values: HashMap<String, String>,
}

// Values may be secrets: never print them.
impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Resolved {
    /// Resolves every declared variable. `overrides` are `NAME=VALUE` / `NAME=@FILE`
    /// strings from the command line; `env` looks up environment variables.
    pub fn resolve(
        declared: &BTreeMap<String, VariableDecl>,
        overrides: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, VariableError> {
        let mut given = HashMap::new();
        let check = |name: &str| {
            if declared.contains_key(name) {
                Ok(())
            } else {
                Err(VariableError::UnknownOverride {
                    name: name.to_owned(),
                    declared: declared.keys().cloned().collect::<Vec<_>>().join(", "),
                })
            }
        };
        for raw in overrides {
            if let Some(file) = raw.strip_prefix('@') {
                for (name, value) in variables_file(file)? {
                    check(&name)?;
                    given.insert(name, value);
                }
                continue;
            }
            let (name, value) = raw
                .split_once('=')
                .ok_or_else(|| VariableError::BadOverride(raw.clone()))?;
            check(name)?;
            // Spin 3.6 `--variable NAME=@FILE`: the file's text verbatim,
            // a trailing newline included.
            let value = match value.strip_prefix('@') {
                Some(file) => {
                    std::fs::read_to_string(file).map_err(|e| VariableError::OverrideFile {
                        name: name.to_owned(),
                        file: file.to_owned(),
                        reason: e.to_string(),
                    })?
                }
                None => value.to_owned(),
            };
            given.insert(name.to_owned(), value);
        }

        let mut values = HashMap::new();
        for (name, decl) in declared {
            let value = given
                .remove(name)
                .or_else(|| env(&env_name(name)))
                .or_else(|| decl.default.clone())
                .ok_or_else(|| VariableError::Missing {
                    name: name.clone(),
                    env: env_name(name),
                })?;
            values.insert(name.clone(), value);
        }
        Ok(Resolved { values })
    }

    /// Expands `text`, whose templates the manifest loader already checked.
    pub fn expand(&self, text: &str) -> Result<String, VariableError> {
        Ok(Template::parse(text)?.render(&self.values))
    }
}

/// What one component's guest sees through `fermyon:spin/variables`.
#[derive(Clone, Default)]
pub struct ComponentVariables(HashMap<String, String>);

impl std::fmt::Debug for ComponentVariables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ComponentVariables {
    /// Expands `[component.<id>.variables]` of `component` in `app`.
    pub fn for_component(
        app: &App,
        component: &str,
        resolved: &Resolved,
    ) -> Result<Self, VariableError> {
        let mut map = HashMap::new();
        if let Some(c) = app.components.get(component) {
            for (name, template) in &c.variables {
                map.insert(name.clone(), resolved.expand(template)?);
            }
        }
        Ok(ComponentVariables(map))
    }

    /// The guest-facing lookup with the interface's error cases.
    pub fn get(&self, name: &str) -> Result<&str, VariableError> {
        check_name(name)?;
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| VariableError::Missing {
                name: name.to_owned(),
                env: env_name(name),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, VariableDecl> {
        let mut d = BTreeMap::new();
        d.insert(
            "port".into(),
            VariableDecl {
                description: None,
                default: Some("6379".into()),
                secret: false,
            },
        );
        d.insert(
            "token".into(),
            VariableDecl {
                description: None,
                default: None,
                secret: true,
            },
        );
        d
    }

    #[test]
    fn precedence_is_flag_then_env_then_default() {
        let env = |k: &str| match k {
            "SPIN_VARIABLE_PORT" => Some("6380".to_owned()),
            "SPIN_VARIABLE_TOKEN" => Some("t".to_owned()),
            _ => None,
        };
        let r = Resolved::resolve(&decls(), &[], env).expect("resolves");
        assert_eq!(r.expand("{{port}}").expect("expands"), "6380");
        let r = Resolved::resolve(&decls(), &["port=6381".into()], env).expect("resolves");
        assert_eq!(r.expand("{{ port }}").expect("expands"), "6381");
        let r = Resolved::resolve(&decls(), &[], |k| {
            (k == "SPIN_VARIABLE_TOKEN").then(|| "t".into())
        })
        .expect("resolves");
        assert_eq!(r.expand("x:{{ port }}/y").expect("expands"), "x:6379/y");
    }

    #[test]
    fn missing_required_names_the_variable_and_how_to_set_it() {
        let e = Resolved::resolve(&decls(), &[], |_| None).expect_err("token is required");
        assert_eq!(
            e.to_string(),
            "variable `token` is required but has no value: pass `--variable token=...` or set SPIN_VARIABLE_TOKEN"
        );
    }

    #[test]
    fn overrides_are_checked() {
        let e = Resolved::resolve(&decls(), &["prot=1".into()], |_| None).expect_err("typo");
        assert!(e.to_string().contains("no such variable"), "{e}");
        let e = Resolved::resolve(&decls(), &["port".into()], |_| None).expect_err("no =");
        assert_eq!(e, VariableError::BadOverride("port".into()));
    }

    #[test]
    fn override_from_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        let arg = format!("token=@{}", file.display());
        let r = Resolved::resolve(&decls(), &[arg], |_| None).expect("resolves");
        assert_eq!(
            r.expand("{{ token }}").expect("expands"),
            "s3cret\n",
            "the file's bytes, as Spin 3.6 keeps them"
        );
    }

    #[test]
    fn many_overrides_from_a_toml_or_json_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = dir.path().join("vars.toml");
        std::fs::write(&toml, "token = \"t\"\nport = \"1\"\n").expect("write");
        let json = dir.path().join("vars.json");
        std::fs::write(&json, r#"{"port": "2"}"#).expect("write");
        let args = [
            format!("@{}", toml.display()),
            format!("@{}", json.display()),
        ];
        let r = Resolved::resolve(&decls(), &args, |_| None).expect("resolves");
        assert_eq!(r.expand("{{ token }}:{{ port }}").expect("expands"), "t:2");
        let txt = dir.path().join("vars.txt");
        std::fs::write(&txt, "token = \"t\"").expect("write");
        let e = Resolved::resolve(&decls(), &[format!("@{}", txt.display())], |_| None)
            .expect_err("only .toml and .json");
        assert!(e.to_string().contains("must end in .json or .toml"), "{e}");
        let unknown = dir.path().join("unknown.toml");
        std::fs::write(&unknown, "nope = \"x\"").expect("write");
        let e = Resolved::resolve(&decls(), &[format!("@{}", unknown.display())], |_| None)
            .expect_err("undeclared");
        assert!(e.to_string().contains("no such variable"), "{e}");
    }

    #[test]
    fn dotenv_files_parse_like_spins() {
        let env = DotEnv::parse(
            "# comment\n\nexport SPIN_VARIABLE_A=plain # note\nB='lit $x'\nC=\"two\\nlines\"\nA2 = spaced \nB=again\n",
            ".env",
        )
        .expect("parses");
        assert_eq!(env.get("SPIN_VARIABLE_A").as_deref(), Some("plain"));
        assert_eq!(
            env.get("B").as_deref(),
            Some("again"),
            "the last assignment wins"
        );
        assert_eq!(env.get("C").as_deref(), Some("two\nlines"));
        assert_eq!(env.get("A2").as_deref(), Some("spaced"));
        let e = DotEnv::parse("X=1\nY=$HOME\n", ".env").expect_err("substitution");
        assert!(e.to_string().starts_with(".env line 2: `$`"), "{e}");
        assert!(DotEnv::parse("just words\n", ".env").is_err());
        let missing = DotEnv::load(std::path::Path::new("/nonexistent/.env")).expect("empty");
        assert_eq!(missing.get("X"), None);
    }

    #[test]
    fn templates_parse_strictly() {
        assert!(matches!(
            Template::parse("a{{ b"),
            Err(VariableError::Unterminated(_))
        ));
        assert!(matches!(
            Template::parse("{{ }}"),
            Err(VariableError::EmptyReference(_))
        ));
        assert!(matches!(
            Template::parse("{{ Bad }}"),
            Err(VariableError::InvalidName(_))
        ));
        let t = Template::parse("redis://{{ h }}:{{p}}").expect("parses");
        assert_eq!(t.references().collect::<Vec<_>>(), ["h", "p"]);
    }

    #[test]
    fn names_follow_spins_rule() {
        for good in ["a", "redis_host", "a1_b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "_a", "A", "a-b", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_output_never_shows_values() {
        let r = Resolved::resolve(&decls(), &["token=hunter2".into()], |_| None).expect("resolves");
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
