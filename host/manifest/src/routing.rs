//! HTTP routing as Spin's HTTP trigger does it: exact routes (`/ping`), named
//! segments (`/users/:id`) and wildcard routes (`/api/...`), the most
//! specific match winning. Matching is
//! done before any instance exists, so an unknown path costs no instantiation.

/// Paths under this prefix belong to the runtime (health, info), never to apps.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

const WILDCARD: &str = "/...";

/// Checks a route written in a manifest; the message explains what is wrong.
pub fn check_route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') {
        return Err(format!("`{route}` must start with `/`"));
    }
    if route.starts_with(WELL_KNOWN_PREFIX) || route == "/.well-known/spin" {
        return Err(format!(
            "`{route}` is reserved for the runtime ({WELL_KNOWN_PREFIX}...)"
        ));
    }
    let fixed = route.strip_suffix(WILDCARD).unwrap_or(route);
    if fixed.contains("...") {
        return Err(format!("`{route}`: `...` may only end a route, as `/...`"));
    }
    if let Some(seg) = fixed
        .split('/')
        .find(|seg| seg.starts_with(':') && !valid_capture_name(&seg[1..]))
    {
        return Err(format!(
            "`{route}`: `{seg}` is not a named segment (`:` then letters, digits, `_` or `-`)"
        ));
    }
    Ok(())
}

fn valid_capture_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The route table of one app (Spin 3.6 trigger-http routing over
/// routefinder): exact segments, named segments (`/users/:id`) and a
/// trailing wildcard (`/api/...`); one trailing `/` on a route or on a
/// request path is ignored; the most specific match wins (per segment:
/// exact, then named, then wildcard; then fewer segments); a route declared
/// twice goes to its last declaration.
#[derive(Debug, Clone)]
pub struct Router<T> {
    /// Most specific first: the first match wins.
    routes: Vec<Route<T>>,
    duplicates: Vec<Duplicate>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Exact(String),
    Named(String),
}

#[derive(Debug, Clone)]
struct Route<T> {
    /// The route as the manifest wrote it.
    declared: String,
    /// The route without a trailing `/...` (or `/`): `spin-component-route`.
    prefix: String,
    segments: Vec<Segment>,
    wildcard: bool,
    target: T,
}

impl<T> Route<T> {
    /// Specificity, per segment: exact (0), named (1), wildcard (2).
    fn kinds(&self) -> impl Iterator<Item = u8> + '_ {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Exact(_) => 0,
                Segment::Named(_) => 1,
            })
            .chain(self.wildcard.then_some(2))
    }

    fn specificity(&self, other: &Self) -> std::cmp::Ordering {
        self.kinds()
            .zip(other.kinds())
            .map(|(a, b)| a.cmp(&b))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.kinds().count().cmp(&other.kinds().count()))
    }
}

/// A route declared more than once: Spin 3.6 keeps the last declaration and
/// logs the others at ERROR level as duplicates that will never be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The route (as the shadowed declaration wrote it).
    pub route: String,
    /// Index of the declaration that is never used, in the order given.
    pub shadowed: usize,
    /// Index of the declaration that is used instead.
    pub effective: usize,
}

/// The outcome of matching a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'r, 'p, T> {
    pub target: &'r T,
    /// The route as declared (`/api/...`): Spin's `spin-matched-route`.
    pub route: &'r str,
    /// The route without a trailing `/...`: Spin's `spin-component-route`.
    pub component_route: &'r str,
    /// What the wildcard matched (`/x/y` for `/api/x/y` on `/api/...`), else empty.
    pub path_info: &'p str,
    /// Named segments and what they matched, in route order
    /// (`spin-path-match-<name>`).
    pub captures: Vec<(&'r str, &'p str)>,
}

/// Why a route table cannot be built. (Duplicates no longer are a reason:
/// see [`Router::duplicates`].)
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("route `{0}` is declared more than once")]
pub struct DuplicateRoute(pub String);

/// `/ping/` → `/ping`, `/` → `` (Spin strips one trailing slash).
fn sanitize(route: &str) -> &str {
    route.strip_suffix('/').unwrap_or(route)
}

impl<T> Router<T> {
    /// Builds the table. Never fails: a route declared twice (after Spin's
    /// trailing-`/` sanitising) goes to its last declaration and is listed
    /// in [`Router::duplicates`].
    pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> Result<Self, DuplicateRoute> {
        let mut table: Vec<(usize, Route<T>)> = Vec::new();
        let mut duplicates = Vec::new();
        // Spin 3.6 first merges routes written identically (an IndexMap keyed
        // by the route as written: the last target, in the first one's
        // place), then adds them in that order to a table keyed by the
        // sanitised route, where a later entry replaces an earlier one. So of
        // `/ping`, `/ping/`, `/ping` the middle one wins.
        let mut written: Vec<(usize, String, T)> = Vec::new();
        for (index, (declared, target)) in routes.into_iter().enumerate() {
            match written.iter().position(|(_, d, _)| *d == declared) {
                Some(i) => {
                    duplicates.push(Duplicate {
                        route: declared.clone(),
                        shadowed: written[i].0,
                        effective: index,
                    });
                    written[i] = (index, declared, target);
                }
                None => written.push((index, declared, target)),
            }
        }
        for (index, declared, target) in written {
            let (prefix, wildcard) = match declared.strip_suffix(WILDCARD) {
                Some(p) => (p.to_owned(), true),
                None => (sanitize(&declared).to_owned(), false),
            };
            let segments = prefix
                .split('/')
                .skip(1)
                .map(|seg| match seg.strip_prefix(':') {
                    Some(name) => Segment::Named(name.to_owned()),
                    None => Segment::Exact(seg.to_owned()),
                })
                .collect();
            let route = Route {
                declared,
                prefix,
                segments,
                wildcard,
                target,
            };
            let same = table
                .iter()
                .position(|(_, r)| r.wildcard == route.wildcard && r.segments == route.segments);
            match same {
                Some(i) => {
                    let (shadowed, old) = std::mem::replace(&mut table[i], (index, route));
                    duplicates.push(Duplicate {
                        route: old.declared,
                        shadowed,
                        effective: index,
                    });
                }
                None => table.push((index, route)),
            }
        }
        let mut routes: Vec<Route<T>> = table.into_iter().map(|(_, r)| r).collect();
        routes.sort_by(|a, b| a.specificity(b));
        Ok(Router { routes, duplicates })
    }

    /// The declarations that are never used because the same route is
    /// declared again later.
    pub fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    /// The most specific route for `path` (without query).
    pub fn find<'r, 'p>(&'r self, path: &'p str) -> Option<Match<'r, 'p, T>> {
        let trimmed = sanitize(path);
        self.routes.iter().find_map(|r| {
            let mut rest = trimmed;
            let mut captures = Vec::new();
            for seg in &r.segments {
                let after = rest.strip_prefix('/')?;
                let end = after.find('/').unwrap_or(after.len());
                let (value, tail) = after.split_at(end);
                match seg {
                    Segment::Exact(text) if text == value => {}
                    Segment::Named(name) if !value.is_empty() => {
                        captures.push((name.as_str(), value));
                    }
                    _ => return None,
                }
                rest = tail;
            }
            let path_info = if r.wildcard {
                // What follows the matched segments in the path as sent,
                // trailing slash included (Spin's `spin-path-info`).
                &path[trimmed.len() - rest.len()..]
            } else if rest.is_empty() {
                ""
            } else {
                return None;
            };
            Some(Match {
                target: &r.target,
                route: &r.declared,
                component_route: &r.prefix,
                path_info,
                captures,
            })
        })
    }

    /// Declared routes and their targets, most specific first.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &T)> {
        self.routes.iter().map(|r| (r.declared.as_str(), &r.target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, u8)]) -> Router<u8> {
        Router::new(routes.iter().map(|(r, t)| (r.to_string(), *t))).expect("no duplicates")
    }

    #[test]
    fn exact_beats_wildcard_and_longer_prefix_wins() {
        let r = router(&[("/...", 0), ("/api/...", 1), ("/api/ping", 2), ("/", 3)]);
        assert_eq!(*r.find("/api/ping").expect("match").target, 2);
        let m = r.find("/api/x/y").expect("match");
        assert_eq!(
            (*m.target, m.path_info, m.route, m.component_route),
            (1, "/x/y", "/api/...", "/api")
        );
        assert_eq!(*r.find("/api").expect("match").target, 1);
        assert_eq!(
            *r.find("/apix").expect("match").target,
            0,
            "a wildcard matches whole segments"
        );
        assert_eq!(*r.find("/").expect("match").target, 3);
        assert_eq!(r.find("/other").expect("match").path_info, "/other");
    }

    #[test]
    fn exact_routes_match_themselves_with_or_without_one_trailing_slash() {
        // Spin 3.6.3 answered GET /ping/ with the /ping component.
        let r = router(&[("/ping", 1)]);
        assert!(r.find("/ping").is_some());
        assert!(r.find("/ping/").is_some());
        assert!(r.find("/ping//").is_none());
        assert!(r.find("/pingx").is_none());
        assert!(r.find("/ping/extra").is_none());
        assert!(r.find("/").is_none());
        // A manifest route "/ping/" is served at /ping (and /ping/).
        let slash = router(&[("/ping/", 1)]);
        let m = slash.find("/ping").expect("served at /ping");
        assert_eq!((m.route, m.component_route), ("/ping/", "/ping"));
        assert!(slash.find("/ping/").is_some());
        let root = router(&[("/", 1)]);
        assert!(root.find("/").is_some());
        assert!(root.find("/x").is_none());
    }

    #[test]
    fn wildcard_path_info_keeps_the_trailing_slash() {
        let r = router(&[("/api/...", 1)]);
        assert_eq!(r.find("/api").expect("match").path_info, "");
        assert_eq!(r.find("/api/").expect("match").path_info, "/");
        assert_eq!(r.find("/api/x/y/").expect("match").path_info, "/x/y/");
    }

    #[test]
    fn named_segments_capture_one_segment_each() {
        let r = router(&[
            ("/:path_segment/:path_end/...", 1),
            ("/users/:id", 2),
            ("/users/me", 3),
        ]);
        let m = r.find("/path/end/rest").expect("match");
        assert_eq!(*m.target, 1);
        assert_eq!(
            m.captures,
            vec![("path_segment", "path"), ("path_end", "end")]
        );
        assert_eq!(
            (m.path_info, m.component_route),
            ("/rest", "/:path_segment/:path_end")
        );
        let id = r.find("/users/42").expect("match");
        assert_eq!((*id.target, id.captures.clone()), (2, vec![("id", "42")]));
        assert_eq!(
            *r.find("/users/me").expect("match").target,
            3,
            "exact beats named"
        );
        assert!(
            r.find("/users/").is_none_or(|m| *m.target == 1),
            "a named segment is never empty"
        );
    }

    #[test]
    fn routes_written_alike_merge_first_as_in_spin() {
        // Spin's IndexMap keeps `/ping` in its first place with its last
        // target (3); `/ping/` (2) comes after it and replaces it.
        let r = router(&[("/ping", 1), ("/ping/", 2), ("/ping", 3)]);
        assert_eq!(*r.find("/ping").expect("match").target, 2);
        assert_eq!(*r.find("/ping/").expect("match").target, 2);
        let r = router(&[("/ping/", 1), ("/ping", 2)]);
        assert_eq!(*r.find("/ping").expect("match").target, 2, "the later one");
    }

    #[test]
    fn the_last_declaration_of_a_route_wins_as_in_spin() {
        let r = router(&[("/a", 1), ("/b", 2), ("/a", 3), ("/b/", 4)]);
        assert_eq!(*r.find("/a").expect("match").target, 3);
        assert_eq!(*r.find("/b").expect("match").target, 4);
        assert_eq!(
            r.duplicates(),
            [
                Duplicate {
                    route: "/a".into(),
                    shadowed: 0,
                    effective: 2
                },
                Duplicate {
                    route: "/b".into(),
                    shadowed: 1,
                    effective: 3
                },
            ]
        );
    }

    #[test]
    fn manifest_routes_are_checked() {
        assert!(check_route("/ping").is_ok());
        assert!(check_route("/...").is_ok());
        assert!(check_route("/u/:id/...").is_ok());
        for bad in [
            "ping",
            "/.well-known/spin/health",
            "/a/.../b",
            "/u/:",
            "/u/:a.b",
        ] {
            assert!(check_route(bad).is_err(), "{bad}");
        }
    }
}
