//! BoldSign: `X-BoldSign-Signature` (before the first NUL) and the body (after it) through the
//! verifier; the parser on the body alone.
#![no_main]

use countersign_providers::boldsign;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (header, body) = common::split(data);
    common::verify_then_parse(
        "bs",
        body,
        &common::One(boldsign::SIGNATURE_HEADER, header),
        None,
    );
    let _ = boldsign::parse(body);
});
