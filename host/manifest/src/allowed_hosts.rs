//! `allowed_outbound_hosts`: which network destinations a component may reach.
//!
//! Entries are `scheme://host[:port]` as in Spin: `*` may stand for the scheme,
//! the host or the port, `*.example.com` matches subdomains, and an omitted port
//! means the scheme's well-known one. Hosts are compared in canonical form
//! (lower case, IP addresses normalised) and never resolved: a DNS name that
//! happens to point at an allowed IP is still a different host, so it is refused.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why an `allowed_outbound_hosts` entry is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("allowed_outbound_hosts entry `{entry}`: {reason}")]
pub struct PatternError {
    entry: String,
    reason: String,
}

/// The parsed list of one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    allow_all: bool,
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.suffix`: any host ending in `.suffix`.
    Subdomain(String),
}

/// One destination a component asked for, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Well-known ports Spin assumes when an entry or address omits one.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "redis" => 6379,
        "rediss" => 6379,
        "mysql" => 3306,
        "postgres" => 5432,
        "mqtt" => 1883,
        _ => return None,
    })
}

/// Canonical host text: lower case, IPv6 without brackets and compressed,
/// IPv4 in dotted quad. Names are left as names (never resolved).
pub fn canonical_host(host: &str) -> String {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(v6) = bare.parse::<Ipv6Addr>() {
        return match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        };
    }
    if let Ok(v4) = bare.parse::<Ipv4Addr>() {
        return v4.to_string();
    }
    bare.to_ascii_lowercase()
}

impl AllowedHosts {
    /// Parses expanded entries (templates already resolved).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, PatternError> {
        let mut allowed = AllowedHosts::default();
        for entry in entries {
            let entry = entry.as_ref();
            if entry == "insecure:allow-all" {
                allowed.allow_all = true;
                continue;
            }
            allowed.patterns.push(Pattern::parse(entry)?);
        }
        Ok(allowed)
    }

    /// Whether `dest` matches any entry.
    pub fn allows(&self, dest: &Destination) -> bool {
        self.allow_all || self.patterns.iter().any(|p| p.matches(dest))
    }
}

impl Pattern {
    fn parse(entry: &str) -> Result<Self, PatternError> {
        let err = |reason: &str| PatternError {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = entry.split_once("://").ok_or_else(|| {
            err("expected scheme://host[:port], for example redis://127.0.0.1:6379")
        })?;
        if scheme.is_empty() || rest.is_empty() {
            return Err(err(
                "expected scheme://host[:port], for example redis://127.0.0.1:6379",
            ));
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err(err(
                "only scheme, host and port are allowed (no path, query or user info)",
            ));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| err("malformed host or port"))?;
        let scheme = (scheme != "*").then(|| scheme.to_ascii_lowercase());
        let port = match port {
            Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| err("the port must be a number from 0 to 65535 or `*`"))?,
            ),
            None => match scheme.as_deref().and_then(default_port) {
                Some(p) => Some(p),
                None => {
                    return Err(err(
                        "this scheme has no well-known port; give one, e.g. :8080, or :*",
                    ));
                }
            },
        };
        let host = match host {
            "*" => HostPattern::Any,
            h if h.starts_with("*.") && h.len() > 2 => {
                HostPattern::Subdomain(h[1..].to_ascii_lowercase())
            }
            h if h.contains('*') => {
                return Err(err("`*` may only be the whole host or a `*.` prefix"));
            }
            h => HostPattern::Exact(canonical_host(h)),
        };
        Ok(Pattern { scheme, host, port })
    }

    fn matches(&self, dest: &Destination) -> bool {
        let scheme = self.scheme.as_deref().is_none_or(|s| s == dest.scheme);
        let port = self.port.is_none_or(|p| p == dest.port);
        let host = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == dest.host,
            HostPattern::Subdomain(suffix) => dest.host.ends_with(suffix.as_str()),
        };
        scheme && port && host
    }
}

/// Splits `host[:port]`, keeping bracketed IPv6 literals whole.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &s[..end + 2];
        return match &rest[end + 1..] {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        // An unbracketed IPv6 literal then `:port`, which is what
        // `redis://{{ redis_host }}:{{ redis_port }}` renders for `::1`:
        // read as host and port. Anything else unbracketed with several
        // colons is ambiguous.
        Some((h, p))
            if h.contains(':')
                && h.parse::<Ipv6Addr>().is_ok()
                && (p == "*" || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))) =>
        {
            Some((h, Some(p)))
        }
        Some((h, _)) if h.contains(':') => None,
        Some((h, p)) if !h.is_empty() => Some((h, Some(p))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(scheme: &str, host: &str, port: u16) -> Destination {
        Destination {
            scheme: scheme.into(),
            host: canonical_host(host),
            port,
        }
    }

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries).expect("valid entries")
    }

    #[test]
    fn exact_entries_match_only_that_destination() {
        let a = allowed(&["redis://127.0.0.1:6379"]);
        assert!(a.allows(&dest("redis", "127.0.0.1", 6379)));
        assert!(!a.allows(&dest("redis", "127.0.0.1", 6380)), "other port");
        assert!(!a.allows(&dest("redis", "127.0.0.2", 6379)), "other host");
        assert!(!a.allows(&dest("http", "127.0.0.1", 6379)), "other scheme");
        assert!(
            !a.allows(&dest("redis", "localhost", 6379)),
            "a name is not its address"
        );
    }

    #[test]
    fn omitted_port_means_the_well_known_one() {
        let a = allowed(&["redis://cache"]);
        assert!(a.allows(&dest("redis", "cache", 6379)));
        assert!(!a.allows(&dest("redis", "cache", 6380)));
        assert!(AllowedHosts::parse(&["foo://cache"]).is_err());
    }

    #[test]
    fn wildcards() {
        let a = allowed(&["redis://*.svc.cluster.local:*", "*://10.0.0.1:1"]);
        assert!(a.allows(&dest("redis", "redis.ns.svc.cluster.local", 1234)));
        assert!(!a.allows(&dest("redis", "svc.cluster.local", 6379)));
        assert!(!a.allows(&dest("redis", "evilsvc.cluster.local", 6379)));
        assert!(a.allows(&dest("http", "10.0.0.1", 1)));
        assert!(allowed(&["insecure:allow-all"]).allows(&dest("x", "y", 1)));
    }

    #[test]
    fn ipv6_forms_are_canonical() {
        let a = allowed(&["redis://[::1]:6379"]);
        assert!(a.allows(&dest("redis", "[0:0:0:0:0:0:0:1]", 6379)));
        assert!(!a.allows(&dest("redis", "127.0.0.1", 6379)));
        let v4 = allowed(&["redis://127.0.0.1:6379"]);
        assert!(
            v4.allows(&dest("redis", "[::ffff:127.0.0.1]", 6379)),
            "mapped form is the same address"
        );
        // `redis://{{ redis_host }}:{{ redis_port }}` with redis_host `::1`.
        let rendered = allowed(&["redis://::1:6379", "redis://fe80::2:*"]);
        assert!(rendered.allows(&dest("redis", "::1", 6379)));
        assert!(!rendered.allows(&dest("redis", "::1", 6380)));
        assert!(rendered.allows(&dest("redis", "fe80::2", 1)));
        assert!(
            AllowedHosts::parse(&["redis://::1"]).is_err(),
            "ambiguous without a port"
        );
    }

    #[test]
    fn malformed_entries_are_explained() {
        for bad in [
            "127.0.0.1:6379",
            "redis://",
            "redis://h:port",
            "redis://h/path",
            "redis://u@h",
            "redis://a*b",
        ] {
            let e = AllowedHosts::parse(&[bad]).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
