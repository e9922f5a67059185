//! The configuration loader: any text, read by both binaries, with every `env:` secret defined.
#![no_main]

use countersign::config::{Config, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name.len() < 64).then(|| format!("value-of-{name}"));
    for role in [Role::Ingester, Role::Worker] {
        if let Ok(config) = Config::from_toml(text, role, &env) {
            let _ = config.build_sources();
        }
    }
});
