//! DocuSign Connect: `X-DocuSign-Signature-1` (before the first NUL) and the body (after it)
//! through the verifier; the parser on the body alone.
#![no_main]

use countersign_providers::docusign;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (header, body) = common::split(data);
    common::verify_then_parse(
        "dg",
        body,
        &common::One(docusign::SIGNATURE_HEADER, header),
        None,
    );
    let _ = docusign::parse(body);
});
