//! Adobe Acrobat Sign: `X-AdobeSign-ClientId` (before the first NUL) and the body (after it)
//! through the checks, from an allowed address; the GET answer on the header; the parser on the
//! body alone.
#![no_main]

use countersign_providers::{Origin, adobe_sign};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (header, body) = common::split(data);
    let headers = common::One(adobe_sign::CLIENT_ID_HEADER, header);
    let origin = Origin {
        path_token: None,
        query: None,
        peer: Some(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    common::verify_then_parse_at("as", body, &headers, origin);
    let sources = common::sources();
    let _ = sources.answer_get(sources.get("as").expect("configured"), &headers, origin);
    let _ = adobe_sign::parse(body);
});
