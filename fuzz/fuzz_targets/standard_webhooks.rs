//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` (the input's
//! first three NUL-separated parts) and the body (the rest) through the verifier; the parser on
//! the body alone.
#![no_main]

use countersign_providers::{Headers, standard_webhooks};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// The three headers of a Standard Webhooks request.
struct Three<'a>([&'a [u8]; 3]);

impl Headers for Three<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            "webhook-id" => Some(self.0[0]),
            "webhook-timestamp" => Some(self.0[1]),
            "webhook-signature" => Some(self.0[2]),
            _ => None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (id, rest) = common::split(data);
    let (timestamp, rest) = common::split(rest);
    let (signature, body) = common::split(rest);
    common::verify_then_parse("sw", body, &Three([id, timestamp, signature]), None);
    let _ = standard_webhooks::parse(body);
});
