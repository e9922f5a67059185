//! Dropbox Sign: the whole input as the body (JSON, multipart or URL-encoded form) through the
//! verifier, the form reader and the parser; the signature's identity and content digest too. A
//! multipart body is sent with the content type its first line declares, as a sender does (the
//! verifier refuses a body whose delimiter is not its `Content-Type` boundary).
#![no_main]

use countersign_providers::{NoHeaders, Provider, dropbox_sign};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let content_type = data.starts_with(b"--").then(|| {
        let line = data
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        let mut value = b"multipart/form-data; boundary=".to_vec();
        value.extend_from_slice(&line[2..]);
        value
    });
    match &content_type {
        Some(value) => {
            common::verify_then_parse("dx", data, &common::One("content-type", value), None)
        }
        None => common::verify_then_parse("dx", data, &NoHeaders, None),
    }
    let _ = dropbox_sign::event_json(data);
    let _ = dropbox_sign::parse(data);
    let _ = dropbox_sign::DropboxSign.content_digest(data);
});
