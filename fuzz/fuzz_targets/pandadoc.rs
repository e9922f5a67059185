//! PandaDoc: the query string (before the first NUL, lossily as UTF-8) and the body (after it)
//! through the verifier; the parser on the body alone.
#![no_main]

use countersign_providers::{NoHeaders, Origin, pandadoc};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (query, body) = common::split(data);
    let query = String::from_utf8_lossy(query);
    common::verify_then_parse_at(
        "pd",
        body,
        &NoHeaders,
        Origin {
            path_token: None,
            query: Some(&query),
            peer: None,
        },
    );
    let _ = pandadoc::parse(body);
});
