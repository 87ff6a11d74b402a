//! Any routes and any path: the router builds or refuses, and a match is
//! consistent: the route is one of those given and path_info is a suffix of
//! the path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ping_manifest::routing::{Router, check_route};

fuzz_target!(|input: (Vec<String>, String)| {
    let (routes, path) = input;
    let valid: Vec<(String, usize)> = routes
        .iter()
        .filter(|r| check_route(r).is_ok())
        .cloned()
        .zip(0..)
        .collect();
    let Ok(router) = Router::new(valid.clone()) else {
        return;
    };
    if let Some(found) = router.find(&path) {
        let (route, _) = &valid[*found.target];
        assert_eq!(
            found.route,
            route.as_str(),
            "the match reports another route"
        );
        assert!(
            path.ends_with(found.path_info),
            "{route} {path} {}",
            found.path_info
        );
    }
});
