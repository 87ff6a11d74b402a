//! The Redis address a guest opens, parsed once and checked against the
//! component's `allowed_outbound_hosts` before anything is dialled (Spin's
//! `factor-outbound-redis` `allowed_hosts` check, done on the parsed host so
//! that user info or odd IP spellings cannot smuggle another destination).

use percent_encoding::percent_decode_str;

use crate::allowed_hosts::{Destination, canonical_host};

/// Parsed `redis://[user][:password@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) destination: Destination,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

/// Never prints credentials.
impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.destination, self.db)
    }
}

/// Why a guest's address string is refused (the guest sees `invalid-address`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AddressError {
    #[error("not a URL")]
    NotAUrl,
    #[error("scheme `{0}` is not supported (use redis://)")]
    Scheme(String),
    #[error("no host")]
    NoHost,
    #[error("the path must be a database number, like /0")]
    Database,
    #[error("query parameters are not supported")]
    Query,
}

impl Address {
    /// Parses a `redis://` URL; the user name and password are percent-decoded.
    pub(crate) fn parse(address: &str) -> Result<Self, AddressError> {
        let url = url::Url::parse(address).map_err(|_| AddressError::NotAUrl)?;
        if url.scheme() != "redis" {
            return Err(AddressError::Scheme(url.scheme().to_owned()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(AddressError::NoHost)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(AddressError::Query);
        }
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or(AddressError::Database)?,
        };
        let decode = |s: &str| {
            Some(percent_decode_str(s).decode_utf8_lossy().into_owned()).filter(|v| !v.is_empty())
        };
        Ok(Address {
            destination: Destination {
                scheme: "redis".into(),
                host: canonical_host(host),
                port: url.port().unwrap_or(6379),
            },
            db,
            username: decode(url.username()),
            password: url.password().and_then(decode),
        })
    }

    /// Removes this address's password from `text` (for error messages).
    pub(crate) fn redact(&self, text: String) -> String {
        match &self.password {
            Some(p) => text.replace(p.as_str(), "***"),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowed_hosts::AllowedHosts;

    #[test]
    fn parses_what_the_component_builds() {
        let a = Address::parse("redis://:p%40ss%3Aw%2Bord@127.0.0.1:6380/2").expect("valid");
        assert_eq!(a.destination.to_string(), "redis://127.0.0.1:6380");
        assert_eq!(a.db, 2);
        assert_eq!(a.password.as_deref(), Some("p@ss:w+ord"));
        assert_eq!(a.username, None);
        let v6 = Address::parse("redis://[::1]").expect("valid");
        assert_eq!(
            (v6.destination.host.as_str(), v6.destination.port, v6.db),
            ("::1", 6379, 0)
        );
    }

    #[test]
    fn userinfo_cannot_smuggle_a_host() {
        let a = Address::parse("redis://127.0.0.1:6379@evil.example:6379").expect("valid URL");
        assert_eq!(a.destination.host, "evil.example");
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert_eq!(Address::parse("nope"), Err(AddressError::NotAUrl));
        assert_eq!(
            Address::parse("rediss://h"),
            Err(AddressError::Scheme("rediss".into()))
        );
        assert_eq!(Address::parse("redis://h/x"), Err(AddressError::Database));
        assert_eq!(
            Address::parse("redis://h/0?protocol=resp3"),
            Err(AddressError::Query)
        );
    }

    /// The guest cannot reach anything but what `allowed_outbound_hosts` names:
    /// host names are compared, never resolved, and every form of a host,
    /// port, scheme or user info that is not exactly an allowed one is refused.
    #[test]
    fn allowed_outbound_hosts_cannot_be_bypassed() {
        let allowed =
            AllowedHosts::parse(&["redis://127.0.0.1:6379", "redis://cache.internal:6380"])
                .expect("valid");
        let verdict = |address: &str| match Address::parse(address) {
            Ok(a) => allowed.allows(&a.destination),
            Err(_) => false,
        };
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1",               // the scheme's default port
            "redis://:pw@127.0.0.1:6379/3",    // credentials and a database
            "redis://[::ffff:127.0.0.1]:6379", // the same IPv4 host, IPv6-mapped
            "redis://CACHE.internal:6380",     // names are case-insensitive
            // The destination is 127.0.0.1; `evil.example:6379` is only user info.
            "redis://evil.example:6379@127.0.0.1:6379",
            // Likewise: a backslash is not a delimiter in redis: URLs. The host
            // dialled is always the one checked, never the URL re-parsed.
            "redis://evil.example\\@127.0.0.1:6379",
        ] {
            assert!(verdict(ok), "{ok} should be allowed");
        }
        for refused in [
            "redis://localhost:6379",          // a name that resolves to an allowed IP
            "redis://127.0.0.2:6379",          // another host
            "redis://[::1]:6379",              // IPv6 loopback is not 127.0.0.1
            "redis://[::ffff:127.0.0.2]:6379", // IPv6-mapped other host
            "redis://2130706433:6379",         // decimal IPv4
            "redis://0x7f000001:6379",         // hex IPv4
            "redis://127.1:6379",              // shorthand IPv4
            "redis://0177.0.0.1:6379",         // octal IPv4
            "redis://127.0.0.1.nip.io:6379",   // a wildcard-DNS name for the IP
            "redis://127.0.0.1:6380",          // another port
            "redis://cache.internal:6379",     // an allowed host on another port
            "redis://cache.internal.evil.example:6380", // suffix trick
            "redis://127.0.0.1:6379@evil.example:6379", // allowed host in the user info
            "redis://evil.example#@127.0.0.1:6379", // a fragment
            "rediss://127.0.0.1:6379",         // another scheme
            "http://127.0.0.1:6379",
            "redis://",
        ] {
            assert!(!verdict(refused), "{refused} must be refused");
        }
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let a = Address::parse("redis://:hunter2@h:1/0").expect("valid");
        assert!(!format!("{a:?}").contains("hunter2"));
        assert_eq!(a.redact("auth hunter2 failed".into()), "auth *** failed");
    }
}
