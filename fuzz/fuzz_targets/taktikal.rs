//! Taktikal: the verifier over any body (the signature sits inside it), and the parser on its
//! own (the fuzzer cannot forge the HMAC, so the parser is also fed the raw input).
#![no_main]

use countersign_providers::{NoHeaders, taktikal};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::verify_then_parse("acme", data, &NoHeaders, None);
    let _ = taktikal::parse(data);
    let _ = taktikal::signature_id(data);
});
