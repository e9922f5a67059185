//! What a source's configuration gives its provider: the source's settings with its secrets
//! resolved, and the one-line error that names where a setting is wrong.
//!
//! The TOML file and the environment are read elsewhere (`countersign::config`); this is what
//! that reading produces for each `[[sources]]` entry, so that a provider can be built and tested
//! without a configuration file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A configuration problem, reported as `<where>: <what>` on one line.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    location: String,
    message: String,
}

impl ConfigError {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
        }
    }

    /// The same problem, its location prefixed with `place` (the file it is in).
    pub fn within(self, place: &str) -> Self {
        Self {
            location: format!("{place}: {}", self.location),
            message: self.message,
        }
    }
}

/// A secret resolved from its reference. Its value never prints; its label (the reference, such as
/// `env:ACME_KEY`) does, and is what a message records as the key that matched.
#[derive(Clone)]
pub struct Secret {
    label: String,
    value: SecretString,
}

impl Secret {
    /// A secret with a given label and value; configuration builds these from references.
    pub fn new(label: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            value: SecretString::from(value.into()),
        }
    }

    /// The reference this secret was read from, safe to log.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The secret's bytes, for a MAC key or a token comparison.
    pub fn expose(&self) -> &[u8] {
        self.value.expose_secret().as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.label)
    }
}

/// One configured endpoint, `POST /webhooks/{name}`, with its provider and resolved secrets.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    /// The provider's name (`taktikal`, …); checked against the provider registry, with the
    /// provider's own settings, when the ingester builds its sources.
    pub provider: String,
    /// Any one that matches is accepted: several allow rotation without downtime.
    pub secrets: Vec<Secret>,
    /// Overrides `[ingester] max_body_bytes` for this source.
    pub max_body_bytes: Option<usize>,
    /// For providers with a signed timestamp: how old a signature may be. Taktikal re-sends with
    /// the original signature, so its default is 24 h.
    pub max_signature_age: Option<Duration>,
    /// Universign: the JSON Web Key Set file of the provider's signing keys.
    pub jwks: Option<PathBuf>,
    /// Legalesign: the X.509 certificate (PEM) whose key signs the "all" callback.
    pub certificate: Option<PathBuf>,
    /// If not empty, only these addresses or networks may post to the source.
    pub allow_ips: Vec<IpNet>,
    /// The provider's API, for the worker: documents that webhooks only announce are downloaded
    /// with it. `None`: nothing is fetched (the documents stay references).
    pub api: Option<ApiConfig>,
    /// The worker's periodic reconciliation with the provider's API (where the provider has
    /// one and `api` is set).
    pub reconcile: ReconcileConfig,
}

/// The keys of a `[[sources]]` entry that only some providers read. Any source may set `name`,
/// `provider`, `max_body_bytes`, `allow_ips` and `allow_shared_secrets`; each provider declares
/// which of these it reads ([`crate::Provider::settings`]), and one of them on a source whose
/// provider does not read it is a configuration error naming it — a `jwks` on a DocuSign source
/// would otherwise be ignored, and its author believe the source checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `secrets`: signing secrets, tokens or client ids.
    Secrets,
    /// `max_signature_age`: for signed timestamps.
    MaxSignatureAge,
    /// `jwks`: the provider's public keys as a JSON Web Key Set file.
    Jwks,
    /// `certificate`: the provider's X.509 certificate file.
    Certificate,
    /// `[sources.api]`: the provider's API, for documents and reconciliation.
    Api,
    /// `[sources.reconcile]`: the periodic reconciliation with that API.
    Reconcile,
}

impl Setting {
    pub const ALL: [Setting; 6] = [
        Setting::Secrets,
        Setting::MaxSignatureAge,
        Setting::Jwks,
        Setting::Certificate,
        Setting::Api,
        Setting::Reconcile,
    ];

    /// The key as the configuration file names it.
    pub fn key(self) -> &'static str {
        match self {
            Setting::Secrets => "secrets",
            Setting::MaxSignatureAge => "max_signature_age",
            Setting::Jwks => "jwks",
            Setting::Certificate => "certificate",
            Setting::Api => "api",
            Setting::Reconcile => "reconcile",
        }
    }
}

/// `[sources.reconcile]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// On by default wherever it can run (an API with credentials, a provider Countersign can
    /// reconcile).
    pub enabled: bool,
    /// Time between runs.
    pub interval: Duration,
    /// A process not in a final state is asked about once its last change is this old.
    pub min_age: Duration,
    /// How far back a run looks: for processes to ask about, and for processes never seen.
    pub look_back: Duration,
    /// Where the provider lists what happened (Legalesign: the group, `/api/v1/group/<name>/`);
    /// providers that need one discover nothing without it.
    pub scope: Option<String>,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(3600),
            min_age: Duration::from_secs(3600),
            look_back: Duration::from_secs(7 * 24 * 3600),
            scope: None,
        }
    }
}

/// `[sources.api]`: where and how the worker reaches a provider's API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The API's base URL (`https://eu-api.legalesign.com/api/v1`); a test or sandbox URL in
    /// tests and trials.
    pub base_url: String,
    /// The API credentials, in the provider's form (Legalesign: `username:secret`). Resolved by
    /// the worker only.
    pub credentials: Option<Secret>,
    /// How long one request may take, connection included.
    pub timeout: Duration,
    /// The largest document the worker downloads.
    pub max_document_bytes: usize,
    /// An OAuth token endpoint (`https://accounts.zoho.eu/oauth/v2/token`): with it,
    /// `credentials` are `<client_id>:<client_secret>:<refresh_token>` and the worker obtains
    /// the access tokens itself (refresh-token grant), for providers that take them.
    pub token_url: Option<String>,
}

/// Default `[sources.api] timeout`.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `[sources.api] max_document_bytes`: 64 MiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// An address or a network (`203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    address: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<std::net::IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a: std::net::IpAddr = text.parse().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { address, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: std::net::IpAddr| -> u128 {
            match a {
                std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                std::net::IpAddr::V6(v6) => u128::from(v6),
            }
        };
        if self.address.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        bits(self.address) & mask == bits(ip) & mask
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "not an IP address or network (203.0.113.7, 203.0.113.0/24, 2001:db8::/32): {text:?}"
            ))
        })
    }
}

/// The largest secret or key file read: a key, a certificate or a JWKS is a few KiB; a path to
/// `/dev/zero` or a log file by mistake must not fill memory.
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// A secret, key or certificate file's text, at most [`MAX_KEY_FILE_BYTES`].
pub fn read_small_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read ({e})"))?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read ({e})"))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_KEY_FILE_BYTES} bytes: not a key file"
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net = IpNet::parse("203.0.113.0/24").unwrap();
        assert!(net.contains("203.0.113.7".parse().unwrap()));
        assert!(
            net.contains("::ffff:203.0.113.7".parse().unwrap()),
            "IPv4-mapped IPv6"
        );
        assert!(!net.contains("203.0.114.7".parse().unwrap()));
        assert!(
            IpNet::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            IpNet::parse("10.0.0.1")
                .unwrap()
                .contains("10.0.0.1".parse().unwrap())
        );
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("nope").is_none());
    }
}
