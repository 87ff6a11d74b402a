//! Any allowed_outbound_hosts entries and any destination: parsing never
//! panics, and `insecure:allow-all` aside, an empty allow-list allows nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ping_manifest::allowed_hosts::{AllowedHosts, Destination, canonical_host};

fuzz_target!(|input: (Vec<String>, String, String, u16)| {
    let (entries, scheme, host, port) = input;
    let dest = Destination {
        scheme,
        host: canonical_host(&host),
        port,
    };
    if let Ok(allowed) = AllowedHosts::parse(&entries) {
        let allows = allowed.allows(&dest);
        if entries.is_empty() {
            assert!(!allows, "an empty allow-list allowed {dest}");
        }
    }
    let _ = AllowedHosts::parse(&[host]);
});
