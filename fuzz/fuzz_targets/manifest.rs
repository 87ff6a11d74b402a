//! Any text as spin.toml: parsing returns an app or an error, never panics,
//! and a parsed app's routes are all routable.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ping_manifest::{manifest, routing::Router};

fuzz_target!(|text: &str| {
    if let Ok(app) = manifest::parse(text, Path::new("spin.toml"), Path::new(".")) {
        let routes = app.http_triggers.iter().map(|t| (t.route.clone(), ()));
        // Routes that passed validation must build a router.
        assert!(Router::new(routes).is_ok());
        for t in &app.http_triggers {
            assert!(
                app.components.contains_key(&t.component),
                "trigger names a missing component"
            );
        }
    }
});
