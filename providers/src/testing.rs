//! What every provider's tests need: headers as pairs, a source, and one-bit flips.

use crate::provider::{Headers, Rejection, Verified};
use crate::settings::{ReconcileConfig, Secret, SourceConfig};

/// Headers given as (lower-case name, value) pairs.
pub struct Pairs(pub Vec<(&'static str, String)>);

impl Headers for Pairs {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes())
    }
}

/// A source of `provider` with `secrets`, labelled `env:KEY0`, `env:KEY1`, ...
pub fn source(provider: &str, secrets: &[&str]) -> SourceConfig {
    SourceConfig {
        name: "test".into(),
        provider: provider.into(),
        secrets: secrets
            .iter()
            .enumerate()
            .map(|(i, s)| Secret::new(format!("env:KEY{i}"), *s))
            .collect(),
        max_body_bytes: None,
        max_signature_age: None,
        jwks: None,
        certificate: None,
        allow_ips: Vec::new(),
        api: None,
        reconcile: ReconcileConfig::default(),
    }
}

/// `bytes` with bit 0 of byte `i` flipped, for every `i` in `range`.
pub fn flips(
    bytes: &[u8],
    range: std::ops::Range<usize>,
) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    range.map(move |i| {
        let mut flipped = bytes.to_vec();
        flipped[i] ^= 0x01;
        (i, flipped)
    })
}

/// Asserts that `verify(key, signature, body)` refuses as `BadSignature` every one-bit flip
/// of the key, of the signature's bytes in `signature_bytes` (its value, not the names a
/// format gives its parts) and of the body, given that it accepts the three as they are.
pub fn assert_every_flip_refused(
    key: &str,
    signature: &str,
    signature_bytes: std::ops::Range<usize>,
    body: &[u8],
    verify: impl Fn(&str, &str, &[u8]) -> Result<Verified, Rejection>,
) {
    assert!(
        verify(key, signature, body).is_ok(),
        "the genuine request verifies"
    );
    for (i, key) in text_flips(key, 0..key.len()) {
        assert_eq!(
            verify(&key, signature, body).unwrap_err(),
            Rejection::BadSignature,
            "key byte {i}"
        );
    }
    for (i, signature) in text_flips(signature, signature_bytes) {
        assert_eq!(
            verify(key, &signature, body).unwrap_err(),
            Rejection::BadSignature,
            "signature byte {i}: {signature}"
        );
    }
    for (i, body) in flips(body, 0..body.len()) {
        assert_eq!(
            verify(key, signature, &body).unwrap_err(),
            Rejection::BadSignature,
            "body byte {i}"
        );
    }
}

/// [`flips`] of text that stays text (bit 0 of an ASCII byte keeps it ASCII).
pub fn text_flips(
    text: &str,
    range: std::ops::Range<usize>,
) -> impl Iterator<Item = (usize, String)> + '_ {
    flips(text.as_bytes(), range)
        .map(|(i, bytes)| (i, String::from_utf8(bytes).expect("ASCII stays ASCII")))
}

/// The bytes of `tests/fixtures/<provider>/<name>` (each directory's `SOURCE.md` names where
/// they come from).
pub fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that `provider`'s state API reads each `(status, state)`: `template` (an answer in the
/// provider's shape) with its `status` set, answered with HTTP 200.
pub fn assert_api_states(
    provider: &dyn crate::Provider,
    template: &serde_json::Value,
    cases: &[(&str, Option<crate::event::ProcessStatus>)],
) {
    let cases: Vec<_> = cases.iter().map(|(s, e)| ((*s).into(), *e)).collect();
    assert_api_states_in(provider, template, "status", &cases);
}

/// The same, for a state in field `field` of any JSON type (Universign's `state`, Legalesign's
/// numeric `status`).
pub fn assert_api_states_in(
    provider: &dyn crate::Provider,
    template: &serde_json::Value,
    field: &str,
    cases: &[(serde_json::Value, Option<crate::event::ProcessStatus>)],
) {
    for (value, expected) in cases {
        let mut answer = template.clone();
        answer[field] = value.clone();
        let answer = serde_json::to_vec(&answer).unwrap();
        assert_eq!(
            provider.api_state(200, &answer, 0),
            Ok(*expected),
            "{}: {field} {value}",
            provider.name()
        );
    }
}
