#![allow(dead_code)] // each target uses a part
//! What the provider targets share: one configuration with a source of every provider, its keys
//! (test-only, in `fuzz/keys/`) written to a temporary directory once, and the split of an input
//! into a header (or URL token) and a body at its first NUL byte.

use std::sync::OnceLock;
use std::time::SystemTime;

use bytes::Bytes;
use countersign::config::{Config, Role};
use countersign::providers::{Headers, Origin, Sources};

pub const TAKTIKAL_KEY: &str = "fuzz-taktikal-key";
pub const URL_TOKEN: &str = "fuzz-url-token";
/// The Standard Webhooks specification's example secret (its test vector is a seed).
pub const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const YS_SECRET: &str = "fuzz-yousign-secret";
pub const DM_SECRET: &str = "fuzz-documenso-secret";
pub const DS_SECRET: &str = "whsec_ZnV6ei1kb2N1c2VhbC1zZWNyZXQ";
pub const ZS_SECRET: &str = "fuzz-zoho-sign-secret";
pub const BS_SECRET: &str = "fuzz-boldsign-secret";
pub const PD_SECRET: &str = "fuzz-pandadoc-key";
pub const DX_SECRET: &str = "fuzz-dropbox-sign-api-key";
pub const AS_CLIENT_ID: &str = "fuzz-adobe-client-id";

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
        let text = format!(
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

            [[sources]]
            name = "ys"
            provider = "yousign"
            secrets = ["env:YS_SECRET"]

            [[sources]]
            name = "dm"
            provider = "documenso"
            secrets = ["env:DM_SECRET"]

            [[sources]]
            name = "ds"
            provider = "docuseal"
            secrets = ["env:DS_SECRET"]
            max_signature_age = "36500d"

            [[sources]]
            name = "zs"
            provider = "zoho_sign"
            secrets = ["env:ZS_SECRET"]

            [[sources]]
            name = "bs"
            provider = "boldsign"
            secrets = ["env:BS_SECRET"]
            max_signature_age = "36500d"

            [[sources]]
            name = "pd"
            provider = "pandadoc"
            secrets = ["env:PD_SECRET"]

            [[sources]]
            name = "dx"
            provider = "dropbox_sign"
            secrets = ["env:DX_SECRET"]
            max_signature_age = "36500d"

            [[sources]]
            name = "as"
            provider = "adobe_sign"
            secrets = ["env:AS_CLIENT_ID"]
            allow_ips = ["127.0.0.1/32"]
            "#,
            jwks.display(),
            certificate.display()
        );
        let env = |name: &str| match name {
            "TAKTIKAL_KEY" => Some(TAKTIKAL_KEY.to_owned()),
            "URL_TOKEN" => Some(URL_TOKEN.to_owned()),
            "SW_SECRET" => Some(SW_SECRET.to_owned()),
            "YS_SECRET" => Some(YS_SECRET.to_owned()),
            "DM_SECRET" => Some(DM_SECRET.to_owned()),
            "DS_SECRET" => Some(DS_SECRET.to_owned()),
            "ZS_SECRET" => Some(ZS_SECRET.to_owned()),
            "BS_SECRET" => Some(BS_SECRET.to_owned()),
            "PD_SECRET" => Some(PD_SECRET.to_owned()),
            "DX_SECRET" => Some(DX_SECRET.to_owned()),
            "AS_CLIENT_ID" => Some(AS_CLIENT_ID.to_owned()),
            _ => None,
        };
        let config = Config::from_toml(&text, Role::Ingester, &env).expect("fuzz configuration");
        Sources::from_config(&config).expect("fuzz sources")
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
