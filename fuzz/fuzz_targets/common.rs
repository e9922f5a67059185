#![allow(dead_code)] // each target uses a part
//! What the provider targets share: a source of every provider, its keys (test-only, in
//! `fuzz/keys/`) written to a temporary directory once, and the split of an input into a header
//! (or URL token) and a body at its first NUL byte.
//!
//! A verified request's forwarded headers are within the bounds `Sources::verify` enforces; that
//! anything within them makes a message the broker takes is `shared/fuzz`'s `forwarding` target.

use std::sync::OnceLock;
use std::time::SystemTime;

use std::time::Duration;

use bytes::Bytes;
use countersign_providers::settings::{IpNet, ReconcileConfig, Secret, SourceConfig};
use countersign_providers::{Headers, Origin, SourceLimits, Sources};

pub const TAKTIKAL_KEY: &str = "fuzz-taktikal-key";
pub const URL_TOKEN: &str = "fuzz-url-token-16b";
/// The Standard Webhooks specification's example secret (its test vector is a seed).
pub const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The providers that need only a secret: (source, provider, secret, extra settings). The
/// secrets are the seeds' (`fuzz/corpus/<target>/`); windows are wide so that seeds verify.
pub const SECRET_SOURCES: &[(&str, &str, &str, Extra)] = &[
    ("ys", "yousign", "fuzz-yousign-secret", Extra::None),
    ("dm", "documenso", "fuzz-documenso-secret", Extra::None),
    (
        "ds",
        "docuseal",
        "whsec_ZnV6ei1kb2N1c2VhbC1zZWNyZXQ",
        Extra::WideWindow,
    ),
    ("zs", "zoho_sign", "fuzz-zoho-sign-secret", Extra::None),
    ("bs", "boldsign", "fuzz-boldsign-secret", Extra::WideWindow),
    ("pd", "pandadoc", "fuzz-pandadoc-key", Extra::None),
    (
        "dx",
        "dropbox_sign",
        "fuzz-dropbox-sign-api-key",
        Extra::WideWindow,
    ),
    ("as", "adobe_sign", "fuzz-adobe-client-id", Extra::Loopback),
    ("dg", "docusign", "fuzz-docusign-connect-key", Extra::None),
];

/// A setting beside the secret.
#[derive(Clone, Copy)]
pub enum Extra {
    None,
    /// `max_signature_age` of a century, so that the seeds' timestamps stay valid.
    WideWindow,
    /// `allow_ips = ["127.0.0.1/32"]` (Adobe Acrobat Sign requires an address list).
    Loopback,
}

/// A century: signature windows wide enough that the seeds verify whenever the fuzzer runs.
const CENTURY: Duration = Duration::from_secs(36_500 * 24 * 3600);

fn source(name: &str, provider: &str, secrets: &[&str]) -> SourceConfig {
    SourceConfig {
        name: name.to_owned(),
        provider: provider.to_owned(),
        secrets: secrets
            .iter()
            .map(|s| Secret::new(format!("env:{name}"), *s))
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

/// What the ingester's defaults are (`ingester.max_body_bytes`, `replay_memory_entries`).
const LIMITS: SourceLimits = SourceLimits {
    max_body_bytes: 64 * 1024 * 1024,
    replay_memory_entries: 500_000,
};

pub fn sources() -> &'static Sources {
    static SOURCES: OnceLock<Sources> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("countersign-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let certificate = dir.join("legalesign.pem");
        let jwks = dir.join("jwks.json");
        std::fs::write(
            &certificate,
            include_str!("../keys/legalesign-certificate.pem"),
        )
        .unwrap();
        std::fs::write(&jwks, include_str!("../keys/universign-jwks.json")).unwrap();
        let mut all = vec![
            SourceConfig {
                max_signature_age: Some(CENTURY),
                ..source("acme", "taktikal", &[TAKTIKAL_KEY])
            },
            SourceConfig {
                jwks: Some(jwks),
                max_signature_age: Some(CENTURY),
                ..source("fr", "universign", &[])
            },
            SourceConfig {
                certificate: Some(certificate),
                ..source("uk", "legalesign", &[])
            },
            source("uk-events", "legalesign_event", &[URL_TOKEN]),
            SourceConfig {
                max_signature_age: Some(CENTURY),
                ..source("sw", "standard_webhooks", &[SW_SECRET])
            },
        ];
        for &(name, provider, secret, extra) in SECRET_SOURCES {
            let mut one = source(name, provider, &[secret]);
            match extra {
                Extra::None => {}
                Extra::WideWindow => one.max_signature_age = Some(CENTURY),
                Extra::Loopback => {
                    one.allow_ips = vec![IpNet::parse("127.0.0.1/32").expect("a network")];
                }
            }
            all.push(one);
        }
        Sources::new(&all, LIMITS).expect("fuzz sources")
    })
}

/// `(before the first NUL, after it)`, or `(empty, everything)` without a NUL.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[], data),
    }
}

/// One header, `name: value`.
pub struct One<'a>(pub &'static str, pub &'a [u8]);

impl Headers for One<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        (name == self.0).then_some(self.1)
    }
}

/// Verifies `body` as `source` received it; when it verifies, the worker's parser must accept
/// or refuse it without panicking too.
pub fn verify_then_parse(source: &str, body: &[u8], headers: &dyn Headers, token: Option<&str>) {
    verify_then_parse_at(
        source,
        body,
        headers,
        Origin {
            path_token: token,
            query: None,
            peer: None,
        },
    );
}

/// [`verify_then_parse`] with the whole origin (a query string).
pub fn verify_then_parse_at(source: &str, body: &[u8], headers: &dyn Headers, origin: Origin<'_>) {
    let sources = sources();
    let source = sources.get(source).expect("configured");
    let verified = sources.verify(
        source,
        Bytes::copy_from_slice(body),
        headers,
        origin,
        SystemTime::now(),
    );
    if let Ok(webhook) = verified {
        let _ = webhook.provider().parse(webhook.body());
        let _ = webhook.provider().signature_id(webhook.body());
    }
}
