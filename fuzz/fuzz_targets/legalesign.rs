//! Legalesign: the "all" batch verifier and parser over the form body, and the "upon event"
//! callback with the URL token (before the first NUL; the right one when that part is empty).
#![no_main]

use countersign_providers::{NoHeaders, legalesign};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (token, body) = common::split(data);
    common::verify_then_parse("uk", body, &NoHeaders, None);
    let token = match std::str::from_utf8(token) {
        Ok("") => Some(common::URL_TOKEN),
        Ok(token) => Some(token),
        Err(_) => None,
    };
    common::verify_then_parse("uk-events", body, &NoHeaders, token);
    let _ = legalesign::parse(body);
    let _ = legalesign::parse_event(body);
});
