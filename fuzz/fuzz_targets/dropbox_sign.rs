//! Dropbox Sign: the whole input as the body (JSON, multipart or URL-encoded form) through the
//! verifier, the form reader and the parser; the signature's identity and content digest too.
#![no_main]

use countersign::providers::{NoHeaders, Provider, dropbox_sign};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::verify_then_parse("dx", data, &NoHeaders, None);
    let _ = dropbox_sign::event_json(data);
    let _ = dropbox_sign::parse(data);
    let _ = dropbox_sign::DropboxSign.content_digest(data);
});
