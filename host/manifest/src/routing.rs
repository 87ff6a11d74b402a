//! HTTP routing as Spin's HTTP trigger does it: exact routes (`/ping`) and
//! wildcard routes (`/api/...`), the most specific match winning. Matching is
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
    if fixed.split('/').any(|seg| seg.starts_with(':')) {
        return Err(format!(
            "`{route}`: named segments (`/:name`) are not supported by ping-host"
        ));
    }
    Ok(())
}

/// The route table of one app.
#[derive(Debug, Clone)]
pub struct Router<T> {
    /// Exact routes, then wildcards by decreasing prefix length: first match wins.
    routes: Vec<Route<T>>,
}

#[derive(Debug, Clone)]
struct Route<T> {
    /// The route as the manifest wrote it.
    declared: String,
    /// `/api` for `/api/...`, `` for `/...`, the route itself for exact routes.
    prefix: String,
    wildcard: bool,
    target: T,
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
}

/// Why a route table cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("route `{0}` is declared more than once")]
pub struct DuplicateRoute(pub String);

impl<T> Router<T> {
    pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> Result<Self, DuplicateRoute> {
        let mut table: Vec<Route<T>> = Vec::new();
        for (declared, target) in routes {
            if table.iter().any(|r| r.declared == declared) {
                return Err(DuplicateRoute(declared));
            }
            let (prefix, wildcard) = match declared.strip_suffix(WILDCARD) {
                Some(p) => (p.to_owned(), true),
                None => (declared.clone(), false),
            };
            table.push(Route {
                declared,
                prefix,
                wildcard,
                target,
            });
        }
        table.sort_by(|a, b| {
            a.wildcard
                .cmp(&b.wildcard)
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Ok(Router { routes: table })
    }

    /// The most specific route for `path` (without query).
    pub fn find<'r, 'p>(&'r self, path: &'p str) -> Option<Match<'r, 'p, T>> {
        self.routes.iter().find_map(|r| {
            let path_info = if r.wildcard {
                let rest = path.strip_prefix(r.prefix.as_str())?;
                if !(rest.is_empty() || rest.starts_with('/')) {
                    return None;
                }
                rest
            } else if path == r.prefix {
                ""
            } else {
                return None;
            };
            Some(Match {
                target: &r.target,
                route: &r.declared,
                component_route: &r.prefix,
                path_info,
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
    fn exact_routes_match_only_themselves() {
        let r = router(&[("/ping", 1)]);
        assert!(r.find("/ping").is_some());
        assert!(r.find("/ping/").is_none());
        assert!(r.find("/pingx").is_none());
        assert!(r.find("/").is_none());
    }

    #[test]
    fn duplicates_are_refused() {
        let e = Router::new([("/a".to_string(), 1), ("/a".to_string(), 2)]).expect_err("duplicate");
        assert_eq!(e, DuplicateRoute("/a".into()));
    }

    #[test]
    fn manifest_routes_are_checked() {
        assert!(check_route("/ping").is_ok());
        assert!(check_route("/...").is_ok());
        for bad in ["ping", "/.well-known/spin/health", "/a/.../b", "/u/:id"] {
            assert!(check_route(bad).is_err(), "{bad}");
        }
    }
}
