//! E-signature providers: one module each, and the configured sources that use them.
//!
//! A provider module verifies a request over the raw bytes and headers and says what the event is
//! (its id and type), parsing only what verification needs; separately, it parses a verified
//! body into the normalized model ([`crate::event`]) for the worker. [`Sources`] holds the configured
//! endpoints and is the only way to turn received bytes into a [`VerifiedWebhook`] — the one type
//! the ingester can publish. Adding a provider touches its own file, the [`ProviderKind`] enum and
//! the `match`es below.

pub mod legalesign;
pub mod taktikal;
pub mod universign;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, Secret, SourceConfig};
use crate::event::{ParseError, SigningEvent};
use crate::replay::{ReplayMemory, Seen};

/// Clock skew tolerated on signed timestamps that lie in the future.
pub const FUTURE_SKEW: Duration = Duration::from_secs(300);

/// The providers Countersign can verify; the name is the `provider` of a source in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Taktikal,
    Universign,
    /// Legalesign's "all" callback, RSA-signed.
    Legalesign,
    /// Legalesign's "upon event" callback, authenticated by a token in its URL.
    #[serde(rename = "legalesign_event")]
    LegalesignEvent,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Taktikal => "taktikal",
            ProviderKind::Universign => "universign",
            ProviderKind::Legalesign => "legalesign",
            ProviderKind::LegalesignEvent => "legalesign_event",
        }
    }

    /// The provider of that name, as the `x-provider` header carries it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "taktikal" => Some(ProviderKind::Taktikal),
            "universign" => Some(ProviderKind::Universign),
            "legalesign" => Some(ProviderKind::Legalesign),
            "legalesign_event" => Some(ProviderKind::LegalesignEvent),
            _ => None,
        }
    }

    /// Parses a verified body into the normalized model (the worker's side).
    pub fn parse(self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError> {
        match self {
            ProviderKind::Taktikal => taktikal::parse(body),
            ProviderKind::Universign => universign::parse(body),
            ProviderKind::Legalesign => legalesign::parse(body),
            ProviderKind::LegalesignEvent => legalesign::parse_event(body),
        }
    }

    /// For schemes whose signature does not cover the body: the signature's identity, so that
    /// the worker can refuse a second body under it across every ingester replica.
    pub fn signature_id(self, body: &[u8]) -> Option<String> {
        match self {
            ProviderKind::Taktikal => taktikal::signature_id(body),
            // The JWS covers the whole body: a signature cannot carry another one.
            ProviderKind::Universign | ProviderKind::Legalesign | ProviderKind::LegalesignEvent => {
                None
            }
        }
    }

    /// The body limit of a source of this provider that sets none, if tighter than the
    /// ingester's (`ingester.max_body_bytes`).
    pub fn default_max_body_bytes(self) -> Option<usize> {
        match self {
            ProviderKind::Legalesign | ProviderKind::LegalesignEvent => {
                Some(legalesign::DEFAULT_MAX_BODY_BYTES)
            }
            ProviderKind::Taktikal | ProviderKind::Universign => None,
        }
    }

    /// True where the event id is the digest of the signed content (Legalesign's batches): two
    /// bodies with one id then differ only in what the signature does not cover (form encoding),
    /// and are the same event.
    pub fn event_id_is_content(self) -> bool {
        self == ProviderKind::Legalesign
    }

    /// True for providers authenticated by a token in the URL (`/webhooks/{source}/{token}`).
    pub fn takes_url_token(self) -> bool {
        self == ProviderKind::LegalesignEvent
    }

    /// Checks what this provider needs from a source's configuration.
    pub(crate) fn check(self, source: &SourceConfig) -> Result<(), String> {
        match self {
            ProviderKind::Taktikal => taktikal::check_config(source),
            ProviderKind::Universign => universign::check_config(source),
            ProviderKind::Legalesign => legalesign::check_config(source),
            ProviderKind::LegalesignEvent => legalesign::check_event_config(source),
        }
    }
}

/// Request headers, by lower-case name, whatever HTTP library received them.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&[u8]>;
}

/// No headers at all (Taktikal signs inside the body).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn get(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

/// What a provider's verifier sees: the raw body and headers, and the time of receipt.
pub struct Request<'a> {
    pub body: &'a [u8],
    pub headers: &'a dyn Headers,
    pub received_at: SystemTime,
    /// The `{token}` of `/webhooks/{source}/{token}`, for providers authenticated that way.
    pub path_token: Option<&'a str>,
}

/// Where a request came from and by which path: what the URL-token and IP checks need.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub path_token: Option<&'a str>,
    pub peer: Option<std::net::IpAddr>,
}

/// What a provider established about a genuine request.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The provider's id for the event, or `None` to use the body's sha256.
    pub event_id: Option<String>,
    /// The provider's event type, as it names it (`AllSigned`, `transaction.lifecycle.completed`).
    pub event_type: Cow<'static, str>,
    /// Which key matched, safe to show: a secret's label (`env:ACME_KEY`) or a public key's id.
    pub key_label: String,
    /// For schemes whose signature does not cover the body: the signature's identity, which must
    /// never arrive with a second, different body.
    pub signature_use: Option<SignatureUse>,
    /// The provider's own signature headers, forwarded so that anyone can verify again.
    pub signature_headers: Vec<(&'static str, String)>,
}

/// One use of a signature that does not cover the body.
#[derive(Debug, Clone)]
pub struct SignatureUse {
    /// The signed bytes that identify the signature (Taktikal: `TimeStamp + Guid`).
    pub id: Vec<u8>,
    /// Until when the signature is acceptable at all; the memory of it may end then.
    pub valid_until: SystemTime,
}

/// Why a request is refused. Client-caused, so never a 5xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unknown source")]
    UnknownSource,
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("signature missing")]
    Unsigned,
    #[error("signature invalid")]
    BadSignature,
    #[error("signature outside the accepted time window")]
    Stale,
    #[error("signature already used with another body")]
    Replayed,
    #[error("address not allowed for this source")]
    AddressNotAllowed,
    /// A body the provider must not send again: `status` is its "stop retrying" code.
    #[error("{reason}")]
    Unacceptable { status: u16, reason: &'static str },
}

impl Rejection {
    /// The HTTP status for this rejection, per the ingester's contract.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::UnknownSource => 404,
            Rejection::TooLarge { .. } => 413,
            Rejection::Unsigned
            | Rejection::BadSignature
            | Rejection::Stale
            | Rejection::Replayed => 401,
            Rejection::AddressNotAllowed => 403,
            Rejection::Unacceptable { status, .. } => *status,
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::UnknownSource => "unknown_source",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Unsigned => "unsigned",
            Rejection::BadSignature => "bad_signature",
            Rejection::Stale => "stale",
            Rejection::Replayed => "replayed",
            Rejection::AddressNotAllowed => "address_not_allowed",
            Rejection::Unacceptable { .. } => "unacceptable",
        }
    }
}

enum Verifier {
    Taktikal(taktikal::Verifier),
    Universign(universign::Verifier),
    Legalesign(legalesign::AllVerifier),
    LegalesignEvent,
}

/// One configured endpoint: `POST /webhooks/{name}`.
pub struct Source {
    name: String,
    provider: ProviderKind,
    secrets: Vec<Secret>,
    max_body_bytes: usize,
    allowed: Vec<crate::config::IpNet>,
    verifier: Verifier,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("secrets", &self.secrets)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Source {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn provider(&self) -> ProviderKind {
        self.provider
    }

    /// The largest body this source accepts.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

/// The configured sources, and the memory of signatures they have used.
#[derive(Debug)]
pub struct Sources {
    by_name: HashMap<String, Source>,
    replay: ReplayMemory,
}

impl Sources {
    /// The configured sources with their verifiers; an error names the source whose keys could
    /// not be loaded (they were checked when the configuration was read, but files can change).
    pub fn from_config(config: &Config) -> Result<Self, crate::config::ConfigError> {
        let by_name = config
            .sources
            .iter()
            .map(|s| {
                let verifier = match s.provider {
                    ProviderKind::Taktikal => {
                        Verifier::Taktikal(taktikal::Verifier::from_config(s))
                    }
                    ProviderKind::Universign => {
                        Verifier::Universign(universign::Verifier::from_config(s).map_err(|e| {
                            crate::config::ConfigError::new(format!("sources[{}]", s.name), e)
                        })?)
                    }
                    ProviderKind::Legalesign => {
                        Verifier::Legalesign(legalesign::AllVerifier::from_config(s).map_err(
                            |e| crate::config::ConfigError::new(format!("sources[{}]", s.name), e),
                        )?)
                    }
                    ProviderKind::LegalesignEvent => Verifier::LegalesignEvent,
                };
                let source = Source {
                    name: s.name.clone(),
                    provider: s.provider,
                    secrets: s.secrets.clone(),
                    max_body_bytes: s.max_body_bytes.unwrap_or_else(|| {
                        let default = config.ingester.max_body_bytes;
                        s.provider
                            .default_max_body_bytes()
                            .map_or(default, |own| own.min(default))
                    }),
                    allowed: s.allow_ips.clone(),
                    verifier,
                };
                Ok((s.name.clone(), source))
            })
            .collect::<Result<_, crate::config::ConfigError>>()?;
        Ok(Self {
            by_name,
            replay: ReplayMemory::new(config.ingester.replay_memory_entries),
        })
    }

    /// The source of that name; `Err(UnknownSource)` otherwise.
    pub fn get(&self, name: &str) -> Result<&Source, Rejection> {
        self.by_name.get(name).ok_or(Rejection::UnknownSource)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The largest `max_body_bytes` of any source (0 without sources).
    pub fn largest_body_limit(&self) -> usize {
        self.by_name
            .values()
            .map(Source::max_body_bytes)
            .max()
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Verifies `body` as received by `source`; the only way to a [`VerifiedWebhook`].
    pub fn verify(
        &self,
        source: &Source,
        body: Bytes,
        headers: &dyn Headers,
        origin: Origin<'_>,
        received_at: SystemTime,
    ) -> Result<VerifiedWebhook, Rejection> {
        if origin.path_token.is_some() && !source.provider.takes_url_token() {
            // A token in the path of a source that takes none: no such endpoint.
            return Err(Rejection::UnknownSource);
        }
        if !source.allowed.is_empty()
            && !origin
                .peer
                .is_some_and(|ip| source.allowed.iter().any(|net| net.contains(ip)))
        {
            return Err(Rejection::AddressNotAllowed);
        }
        if body.len() > source.max_body_bytes {
            return Err(Rejection::TooLarge {
                limit: source.max_body_bytes,
            });
        }
        let request = Request {
            body: &body,
            headers,
            received_at,
            path_token: origin.path_token,
        };
        let verified = match &source.verifier {
            Verifier::Taktikal(v) => v.verify(&request, &source.secrets)?,
            Verifier::Universign(v) => v.verify(&request)?,
            Verifier::Legalesign(v) => v.verify(&request)?,
            Verifier::LegalesignEvent => legalesign::verify_event(&request, &source.secrets)?,
        };

        let mut body_sha256 = None;
        if let Some(signature) = &verified.signature_use {
            let digest: [u8; 32] = Sha256::digest(&body).into();
            body_sha256 = Some(digest);
            let key: [u8; 32] = Sha256::new()
                .chain_update(source.name.as_bytes())
                .chain_update([0u8])
                .chain_update(&signature.id)
                .finalize()
                .into();
            let keep_until = signature
                .valid_until
                .checked_add(FUTURE_SKEW)
                .unwrap_or(signature.valid_until);
            if self.replay.remember(key, digest, keep_until, received_at) == Seen::OtherBody {
                return Err(Rejection::Replayed);
            }
        }

        let event_id = match verified.event_id {
            Some(id) => id,
            None => hex(&body_sha256.unwrap_or_else(|| Sha256::digest(&body).into())),
        };
        Ok(VerifiedWebhook {
            source: source.name.clone(),
            provider: source.provider,
            event_id,
            event_type: verified.event_type,
            key_label: verified.key_label,
            signature_headers: verified.signature_headers,
            body,
        })
    }
}

/// A request proven genuine for a configured source. Only [`Sources::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook {
    source: String,
    provider: ProviderKind,
    event_id: String,
    event_type: Cow<'static, str>,
    key_label: String,
    signature_headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl VerifiedWebhook {
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn provider(&self) -> ProviderKind {
        self.provider
    }
    pub fn event_id(&self) -> &str {
        &self.event_id
    }
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
    /// The label of the secret that matched (`env:ACME_KEY`), never its value.
    pub fn key_label(&self) -> &str {
        &self.key_label
    }
    pub fn signature_headers(&self) -> &[(&'static str, String)] {
        &self.signature_headers
    }
    /// The request body, byte for byte.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// True if the body's first byte after JSON whitespace opens an object. serde reads a struct from
/// a JSON array too (positionally), so every provider whose webhooks are JSON objects checks this
/// before deserializing — the verifier and the parser alike, so that both read a body the same way.
pub(crate) fn is_json_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|&b| b == b'{')
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}
