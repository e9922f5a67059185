#![allow(dead_code)] // each target uses a part
//! What the provider targets share: one configuration with a source of every provider, its keys
//! (test-only, in `fuzz/keys/`) written to a temporary directory once, and the split of an input
//! into a header (or URL token) and a body at its first NUL byte.

use std::sync::OnceLock;
use std::time::SystemTime;

use bytes::Bytes;
use countersign::config::{Config, Role};
use countersign_providers::{Headers, Origin, Sources};

pub const TAKTIKAL_KEY: &str = "fuzz-taktikal-key";
pub const URL_TOKEN: &str = "fuzz-url-token-16b";
/// The Standard Webhooks specification's example secret (its test vector is a seed).
pub const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The providers that need only a secret: (source, provider, secret, extra settings). The
/// secrets are the seeds' (`fuzz/corpus/<target>/`); windows are wide so that seeds verify.
pub const SECRET_SOURCES: &[(&str, &str, &str, &str)] = &[
    ("ys", "yousign", "fuzz-yousign-secret", ""),
    ("dm", "documenso", "fuzz-documenso-secret", ""),
    (
        "ds",
        "docuseal",
        "whsec_ZnV6ei1kb2N1c2VhbC1zZWNyZXQ",
        "max_signature_age = \"36500d\"",
    ),
    ("zs", "zoho_sign", "fuzz-zoho-sign-secret", ""),
    (
        "bs",
        "boldsign",
        "fuzz-boldsign-secret",
        "max_signature_age = \"36500d\"",
    ),
    ("pd", "pandadoc", "fuzz-pandadoc-key", ""),
    (
        "dx",
        "dropbox_sign",
        "fuzz-dropbox-sign-api-key",
        "max_signature_age = \"36500d\"",
    ),
    (
        "as",
        "adobe_sign",
        "fuzz-adobe-client-id",
        "allow_ips = [\"127.0.0.1/32\"]",
    ),
    ("dg", "docusign", "fuzz-docusign-connect-key", ""),
];

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
        let mut text = format!(
            r#"
            [[sources]]
            name = "acme"
            provider = "taktikal"
            secrets = ["env:TAKTIKAL_KEY"]
            max_signature_age = "36500d"

            [[sources]]
            name = "fr"
            provider = "universign"
            jwks = "{}"
            max_signature_age = "36500d"

            [[sources]]
            name = "uk"
            provider = "legalesign"
            certificate = "{}"

            [[sources]]
            name = "uk-events"
            provider = "legalesign_event"
            secrets = ["env:URL_TOKEN"]

            [[sources]]
            name = "sw"
            provider = "standard_webhooks"
            secrets = ["env:SW_SECRET"]
            max_signature_age = "36500d"
            "#,
            jwks.display(),
            certificate.display()
        );
        for (name, provider, _, extra) in SECRET_SOURCES {
            text.push_str(&format!(
                "[[sources]]\nname = \"{name}\"\nprovider = \"{provider}\"\nsecrets = [\"env:S_{name}\"]\n{extra}\n"
            ));
        }
        let env = |name: &str| match name {
            "TAKTIKAL_KEY" => Some(TAKTIKAL_KEY.to_owned()),
            "URL_TOKEN" => Some(URL_TOKEN.to_owned()),
            "SW_SECRET" => Some(SW_SECRET.to_owned()),
            other => SECRET_SOURCES
                .iter()
                .find(|(source, ..)| other.strip_prefix("S_") == Some(*source))
                .map(|(_, _, secret, _)| (*secret).to_owned()),
        };
        let config = Config::from_toml(&text, Role::Ingester, &env).expect("fuzz configuration");
        config.build_sources().expect("fuzz sources")
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
        assert_fits(&webhook);
    }
}

/// The header-forwarding path: the message the ingester would publish for a verified request
/// fits the bound every message must (whatever headers the request carried).
pub fn assert_fits(webhook: &countersign_providers::VerifiedWebhook) {
    let receipt = countersign::message::Receipt {
        request_id: "fuzz-request",
        received_at: SystemTime::now(),
        content_type: Some("application/json"),
    };
    let outbound = countersign::message::outbound(webhook, &receipt);
    let len = countersign::amqp::header_frame_len(&outbound.properties);
    assert!(
        len <= countersign::message::MAX_HEADER_FRAME,
        "a verified request made a {len}-byte header frame"
    );
}
