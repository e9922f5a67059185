//! E-signature providers: one module each, one line each in [`REGISTRY`], and the configured
//! sources that use them.
//!
//! A provider is a unit struct implementing [`Provider`] in `providers/<name>.rs`: it checks a
//! source's configuration and makes the source's [`Verify`] (which verifies a request over the raw
//! bytes and headers and says what the event is, parsing only what verification needs), says how
//! the provider wants its webhook answered, and parses a verified body into the normalized model
//! ([`crate::event`]) for the worker. Nothing else in Countersign matches on a provider: it holds a
//! [`ProviderKind`] (a handle into the registry) and asks it. [`Sources`] holds the configured
//! endpoints and is the only way to turn received bytes into a [`VerifiedWebhook`] — the one type
//! the ingester can publish.
//!
//! Adding a provider: its module with its `impl Provider`, one line in [`REGISTRY`], its tests
//! and README section.

pub mod adobe_sign;
pub mod boldsign;
pub mod documenso;
pub mod docuseal;
pub mod docusign;
pub mod dropbox_sign;
pub mod legalesign;
pub mod pandadoc;
pub mod standard_webhooks;
pub mod taktikal;
pub mod universign;
pub mod yousign;
pub mod zoho_sign;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::{Config, ConfigError, SourceConfig};
use crate::event::{ParseError, SigningEvent};
use crate::replay::{ReplayMemory, Seen};

/// Clock skew tolerated on signed timestamps that lie in the future.
pub const FUTURE_SKEW: Duration = Duration::from_secs(300);

/// Every provider Countersign knows, by its configuration name.
pub static REGISTRY: &[&dyn Provider] = &[
    &taktikal::Taktikal,
    &universign::Universign,
    &legalesign::Legalesign,
    &legalesign::LegalesignEvent,
    &standard_webhooks::StandardWebhooks,
    &yousign::Yousign,
    &documenso::Documenso,
    &docuseal::DocuSeal,
    &zoho_sign::ZohoSign,
    &boldsign::BoldSign,
    &pandadoc::PandaDoc,
    &dropbox_sign::DropboxSign,
    &adobe_sign::AdobeSign,
    &docusign::DocuSign,
];

/// One e-signature provider's webhooks: how they are verified, answered and read.
pub trait Provider: Send + Sync + 'static {
    /// The `provider` of a source in the configuration, and the `x-provider` message header.
    fn name(&self) -> &'static str;

    /// Checks what this provider needs from a source's configuration and makes the source's
    /// verifier (keys loaded). The error is one sentence: what is missing or wrong.
    fn verifier(&self, source: &SourceConfig) -> Result<Box<dyn Verify>, String>;

    /// Parses a verified body into the normalized model (the worker's side).
    fn parse(&self, body: &[u8]) -> Result<Vec<SigningEvent>, ParseError>;

    /// Whether the signature covers the body. Where it does not, a verified request carries
    /// [`Verified::signature_use`], and [`Provider::signature_id`] finds the signature again.
    fn signs_body(&self) -> bool {
        true
    }

    /// Whether the provider's credential proves the event's content even against someone who
    /// holds a request already delivered (from a log, a proxy, a retry). False where such a
    /// request can mint another event: Dropbox Sign (the hash covers time and type only, and one
    /// hash serves every signer of the request), Documenso (a bearer secret in a header), Adobe
    /// Acrobat Sign (a public client id and an address list), Legalesign's event callback (a URL
    /// token). Their signing processes are shown `unconfirmed` by the read API until the
    /// provider's API confirms them. (Taktikal's signature does not cover the body either, but a
    /// delivered signature can never carry another body: its events are proven.)
    fn proves_content(&self) -> bool {
        true
    }

    /// For schemes whose signature does not cover the body: the signature's identity, so that
    /// the worker can refuse a second body under it across every ingester replica.
    fn signature_id(&self, _body: &[u8]) -> Option<String> {
        None
    }

    /// The digest a signature that does not cover the body is held to: one signature, one
    /// content. The body's sha256, unless the provider wraps its content in bytes that change
    /// per delivery (Dropbox Sign's multipart boundary).
    fn content_digest(&self, body: &[u8]) -> [u8; 32] {
        Sha256::digest(body).into()
    }

    /// The shortest secret a source of this provider may have ([`MIN_SECRET_BYTES`]; a blank one
    /// is refused whatever this says).
    fn min_secret_bytes(&self) -> usize {
        MIN_SECRET_BYTES
    }

    /// The body limit of a source of this provider that sets none, if tighter than the
    /// ingester's (`ingester.max_body_bytes`).
    fn default_max_body_bytes(&self) -> Option<usize> {
        None
    }

    /// True where the provider may send one event as different bytes, so that its event id is
    /// derived from what identifies the event rather than from the body: Legalesign's batches
    /// (the id is the signed `data`'s digest; the form encoding around it is unsigned), and
    /// senders that serialize an event afresh on every attempt (DocuSeal's document links,
    /// Documenso's `createdAt`). A second body under one id is then a repeat delivery of the
    /// same event, not a conflict.
    fn resends_reencoded(&self) -> bool {
        false
    }

    /// True for a provider's test event (the sample its settings page sends): published marked
    /// [`crate::message::TEST`], archived, and never projected as a real signing.
    fn is_test_event(&self, _body: &[u8]) -> bool {
        false
    }

    /// True for providers authenticated by a token in the URL (`/webhooks/{source}/{token}`).
    fn takes_url_token(&self) -> bool {
        false
    }

    /// The reply to a webhook that was accepted (confirmed or spooled). Most providers take any
    /// 2xx; some want a given body or an echoed header.
    fn accepted_reply(&self, _request: &dyn Headers) -> Reply {
        Reply::accepted()
    }

    /// The `Authorization` header value for the provider's API, made from a source's
    /// `api.credentials`; `None` where Countersign has no API client for the provider.
    fn api_authorization(&self, _credentials: &[u8]) -> Option<String> {
        None
    }

    /// The documents a listing of the provider's API names ([`crate::event::Document`]'s
    /// `fetch_listing`), each with the path of its content.
    fn listed_documents(&self, _listing: &[u8]) -> Result<Vec<crate::event::Document>, String> {
        Err(format!("{} lists no documents", self.name()))
    }

    /// How the worker asks the provider's API what its webhooks may have missed; `None` where
    /// Countersign cannot reconcile the provider.
    fn reconcile(&self) -> Option<&'static dyn Reconcile> {
        None
    }

    /// A fresh sample webhook for `source`, signed as this provider signs: what `countersign
    /// send` posts and the whole-stack tests use. `private_key` (PKCS#8 PEM) is the provider's
    /// key where the provider, not the source, holds the signing key.
    fn sample(&self, source: &SourceConfig, private_key: Option<&str>) -> Result<Sample, String>;
}

/// A source's verifier, made by [`Provider::verifier`] from its configuration.
pub trait Verify: Send + Sync {
    /// Verifies a request over its raw bytes; says what the event is.
    fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection>;

    /// A `GET` to the endpoint (Adobe Acrobat Sign's verification of intent): `None` where the
    /// provider sends none (the ingester answers 405), else the reply or why not. Nothing is
    /// published either way.
    fn answer_get(&self, _headers: &dyn Headers) -> Option<Result<Reply, Rejection>> {
        None
    }
}

/// A provider's reconciliation: which API paths tell what happened, and what of an answer the
/// archive lacks.
pub trait Reconcile: Send + Sync {
    /// The path (under `api.base_url`) that tells everything about one process.
    fn process_path(&self, process_key: &str) -> String;
    /// The path that lists what happened between `from` and `to`, to find processes never seen,
    /// within `scope` (`[sources.reconcile] scope`) where the provider needs one.
    fn discovery_path(
        &self,
        scope: Option<&str>,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Option<String>;
    /// For a paged listing: the path of the page after `answer` (got from `path`), if any.
    fn next_path(&self, _path: &str, _answer: &[u8]) -> Option<String> {
        None
    }
    /// The processes an answer speaks of.
    fn processes(&self, answer: &[u8]) -> Result<Vec<String>, String>;
    /// What an answer has that the archive lacks: one gap per process. `known` holds the entry
    /// keys recorded for each process the archive has; a process absent from it was never seen.
    fn gaps(
        &self,
        answer: &[u8],
        known: &HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<Vec<Gap>, String>;
}

/// What the archive lacks of one process: a message body the provider's parser reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub process_key: String,
    /// The process was never seen at all.
    pub unknown_process: bool,
    /// The missing activity entries' keys, sorted.
    pub missing: Vec<String>,
    pub body: Vec<u8>,
    pub event_type: &'static str,
}

/// A provider, by its place in [`REGISTRY`]: what configuration, messages and stored rows name.
#[derive(Clone, Copy)]
pub struct ProviderKind(&'static dyn Provider);

impl ProviderKind {
    /// The provider of that name (a source's `provider`, the `x-provider` header).
    pub fn from_name(name: &str) -> Option<Self> {
        REGISTRY
            .iter()
            .find(|p| p.name() == name)
            .map(|p| ProviderKind(*p))
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// [`ProviderKind::from_name`], or why not in one sentence that lists the registered names.
    pub fn named(name: &str) -> Result<Self, String> {
        Self::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = REGISTRY.iter().map(|p| p.name()).collect();
            format!("unknown provider {name:?} (one of: {})", names.join(", "))
        })
    }
}

impl std::ops::Deref for ProviderKind {
    type Target = dyn Provider;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for ProviderKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for ProviderKind {}

impl std::fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an accepted webhook is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Cow<'static, str>,
    /// Besides `content-type` and `x-request-id`.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// `200 {"status":"accepted"}`: what every provider without a requirement of its own gets.
    pub fn accepted() -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: Cow::Borrowed(r#"{"status":"accepted"}"#),
            headers: Vec::new(),
        }
    }
}

/// A signed request ready to post to `/webhooks/{source}[/{path_token}]`.
#[derive(Debug, Clone)]
pub struct Sample {
    /// For providers authenticated by a token in the URL (a secret: never print it).
    pub path_token: Option<String>,
    /// The query string to post with (without `?`), for providers that sign there.
    pub query: Option<String>,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    /// The signing process the sample is about, to read it back from the activity API.
    pub process_key: String,
}

/// Why a sample cannot be made without the provider's private key.
pub(crate) fn needs_private_key(source: &SourceConfig) -> String {
    format!(
        "source {} ({}) is signed with the provider's private key: pass --private-key \
         (a test key whose public half the source is configured with)",
        source.name, source.provider
    )
}

/// The source's secrets, or why a provider that needs at least one cannot do without: "`provider`
/// needs at least one secret (`what`)".
pub(crate) fn required_secrets(
    source: &SourceConfig,
    what: &str,
) -> Result<Vec<crate::config::Secret>, String> {
    if source.secrets.is_empty() {
        return Err(format!(
            "{} needs at least one secret ({what})",
            source.provider
        ));
    }
    Ok(source.secrets.clone())
}

/// The secret a sample is signed with: the source's first.
pub(crate) fn first_secret(source: &SourceConfig) -> Result<&crate::config::Secret, String> {
    source
        .secrets
        .first()
        .ok_or_else(|| format!("source {} has no secret to sign with", source.name))
}

/// A fresh random id for samples (32 hex digits).
pub(crate) fn sample_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
    /// The raw query string (after `?`), for providers that sign there (PandaDoc).
    pub query: Option<&'a str>,
}

/// Where a request came from and by which path: what the URL-token and IP checks need.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub path_token: Option<&'a str>,
    /// The raw query string, if the URL has one.
    pub query: Option<&'a str>,
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
    /// The digest of the content the signature is held to, when the verifier has it at hand;
    /// `None`: [`Provider::content_digest`] of the body.
    pub content_digest: Option<[u8; 32]>,
}

/// Why a request is not published. Client-caused, so never a 5xx.
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
    /// The provider checking the endpoint (BoldSign's verification event): answered with this
    /// reply, and nothing is published.
    #[error("an endpoint check by the provider, answered without publishing")]
    Handshake(Reply),
    /// Genuine, but with more header bytes than a message may forward: refused before anything
    /// is published or spooled (a message the broker cannot take would stop the spool).
    #[error(transparent)]
    Oversized(#[from] crate::message::Oversized),
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
            Rejection::Handshake(reply) => reply.status,
            Rejection::Oversized(crate::message::Oversized::EventType { .. }) => 400,
            Rejection::Oversized(_) => 431,
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
            Rejection::Handshake(_) => "handshake",
            Rejection::Oversized(_) => "oversized_headers",
        }
    }
}

/// One configured endpoint: `POST /webhooks/{name}`.
pub struct Source {
    name: String,
    provider: ProviderKind,
    max_body_bytes: usize,
    allowed: Vec<crate::config::IpNet>,
    verifier: Box<dyn Verify>,
    /// The signatures this source has used (for schemes whose signature does not cover the
    /// body): one memory per source, so that one source's traffic never evicts another's.
    replay: ReplayMemory,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("provider", &self.provider)
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
}

impl Sources {
    /// The configured sources with their verifiers. An error names the source whose provider
    /// is unknown or whose provider-specific settings (keys, files) are missing or unusable.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let by_name = config
            .sources
            .iter()
            .map(|s| {
                let location = format!("sources[{}]", s.name);
                let provider = ProviderKind::named(&s.provider)
                    .map_err(|message| ConfigError::new(format!("{location}.provider"), message))?;
                let verifier = provider
                    .verifier(s)
                    .map_err(|message| ConfigError::new(location.clone(), message))?;
                check_secrets(&location, s, provider.min_secret_bytes())?;
                let source = Source {
                    name: s.name.clone(),
                    provider,
                    max_body_bytes: s.max_body_bytes.unwrap_or_else(|| {
                        let default = config.ingester.max_body_bytes;
                        provider
                            .default_max_body_bytes()
                            .map_or(default, |own| own.min(default))
                    }),
                    allowed: s.allow_ips.clone(),
                    verifier,
                    replay: ReplayMemory::new(config.ingester.replay_memory_entries),
                };
                Ok((s.name.clone(), source))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self { by_name })
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

    /// Answers a `GET` to `source`'s endpoint where its provider sends one; see
    /// [`Verify::answer_get`]. The URL-token and address rules of [`Sources::verify`] apply.
    pub fn answer_get(
        &self,
        source: &Source,
        headers: &dyn Headers,
        origin: Origin<'_>,
    ) -> Option<Result<Reply, Rejection>> {
        let answer = source.verifier.answer_get(headers)?;
        if origin.path_token.is_some() && !source.provider.takes_url_token() {
            return Some(Err(Rejection::UnknownSource));
        }
        if let Err(refused) = Self::check_address(source, origin) {
            return Some(Err(refused));
        }
        Some(answer)
    }

    fn check_address(source: &Source, origin: Origin<'_>) -> Result<(), Rejection> {
        if !source.allowed.is_empty()
            && !origin
                .peer
                .is_some_and(|ip| source.allowed.iter().any(|net| net.contains(ip)))
        {
            return Err(Rejection::AddressNotAllowed);
        }
        Ok(())
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
        Self::check_address(source, origin)?;
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
            query: origin.query,
        };
        let verified = source.verifier.verify(&request)?;
        crate::message::check_forwarded(&verified.signature_headers, &verified.event_type)?;

        if let Some(signature) = &verified.signature_use {
            let digest = signature
                .content_digest
                .unwrap_or_else(|| source.provider.content_digest(&body));
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
            if source.replay.remember(key, digest, keep_until, received_at) == Seen::OtherBody {
                return Err(Rejection::Replayed);
            }
        }

        let event_id = match verified.event_id {
            Some(id) => id,
            None => hex(&Sha256::digest(&body)),
        };
        Ok(VerifiedWebhook {
            source: source.name.clone(),
            provider: source.provider,
            test: source.provider.is_test_event(&body),
            event_id,
            event_type: verified.event_type,
            key_label: verified.key_label,
            signature_headers: verified.signature_headers,
            body,
        })
    }
}

/// The shortest signing secret accepted where a provider does not say otherwise: a key that a
/// person typed by hand or a placeholder left in (`"  "`, `"\n\n"`, `changeme`) is refused at start.
pub const MIN_SECRET_BYTES: usize = 16;

/// Refuses a source whose secrets are blank after trimming or shorter than `min_bytes`.
fn check_secrets(
    location: &str,
    source: &SourceConfig,
    min_bytes: usize,
) -> Result<(), ConfigError> {
    for (i, secret) in source.secrets.iter().enumerate() {
        let value = secret.expose();
        let problem = if value.trim_ascii().is_empty() {
            "is blank (only white space)".to_owned()
        } else if value.len() < min_bytes {
            format!(
                "is {} bytes; a signing secret of {} has at least {min_bytes}",
                value.len(),
                source.provider
            )
        } else {
            continue;
        };
        return Err(ConfigError::new(
            format!("{location}.secrets[{i}]"),
            format!("{} {problem}", secret.label()),
        ));
    }
    Ok(())
}

/// A request proven genuine for a configured source. Only [`Sources::verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedWebhook {
    source: String,
    provider: ProviderKind,
    test: bool,
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
    /// The provider's test event ([`Provider::is_test_event`]).
    pub fn is_test(&self) -> bool {
        self.test
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

/// HMAC-SHA256 of the concatenation of `parts` with `key`, ready to compare
/// ([`Mac::verify_slice`] is constant-time) or to finalize.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The index of the first secret whose HMAC-SHA256 of `parts` is one of `signatures` (each
/// compared in constant time).
pub(crate) fn matching_secret(
    secrets: &[crate::config::Secret],
    parts: &[&[u8]],
    signatures: &[Vec<u8>],
) -> Option<usize> {
    if signatures.is_empty() {
        return None;
    }
    secrets.iter().position(|secret| {
        let mac = hmac_sha256(secret.expose(), parts);
        signatures
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
    })
}

/// Lower- or upper-case hex, an even number of digits.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A signed Unix-seconds timestamp as sent: digits only (the signed text is the header as sent,
/// and `+5` or ` 5` would parse).
pub(crate) fn unix_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `Err(Stale)` unless a signature made at `seconds` is at most `max_age` old and at most
/// [`FUTURE_SKEW`] ahead when received.
pub(crate) fn check_freshness(
    seconds: u64,
    received_at: SystemTime,
    max_age: Duration,
) -> Result<(), Rejection> {
    let sent_at = std::time::UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .ok_or(Rejection::BadSignature)?;
    let too_old = received_at
        .duration_since(sent_at)
        .is_ok_and(|age| age > max_age);
    let too_new = sent_at
        .duration_since(received_at)
        .is_ok_and(|ahead| ahead > FUTURE_SKEW);
    if too_old || too_new {
        return Err(Rejection::Stale);
    }
    Ok(())
}

/// A source's `max_signature_age`, or `default`; zero is a configuration error.
pub(crate) fn max_signature_age(
    source: &SourceConfig,
    default: Duration,
) -> Result<Duration, String> {
    match source.max_signature_age {
        Some(age) if age.is_zero() => Err("max_signature_age must be greater than zero".to_owned()),
        Some(age) => Ok(age),
        None => Ok(default),
    }
}

/// The value of header `name` as text, if present and UTF-8.
pub(crate) fn header_text<'a>(request: &Request<'a>, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// `body` as a JSON object of type `T`, or why not, naming `what` it should have been ("a
/// BoldSign event"): the parsers' first step.
pub(crate) fn parse_object<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ParseError> {
    if !is_json_object(body) {
        return Err(ParseError(format!("not {what}: JSON object expected")));
    }
    serde_json::from_slice(body).map_err(|e| ParseError(format!("not {what}: {e}")))
}

/// `text` as one segment of a URL path: percent-encoded (a space as `%20`, never `+`).
pub(crate) fn path_segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A JSON id as text: providers send ids as numbers (Documenso, DocuSeal) or strings.
pub(crate) fn json_id(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An RFC 3339 time (`2024-01-15T10:30:00.000Z`), in UTC.
pub(crate) fn rfc3339(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
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

/// What every provider's tests need: headers as pairs, a source, and one-bit flips.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::config::Secret;

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
            reconcile: crate::config::ReconcileConfig::default(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    #[test]
    fn every_registered_provider_is_found_by_its_own_name_once() {
        for provider in REGISTRY {
            let found = ProviderKind::from_name(provider.name()).expect("registered");
            assert_eq!(found.name(), provider.name());
            assert_eq!(
                REGISTRY
                    .iter()
                    .filter(|p| p.name() == provider.name())
                    .count(),
                1,
                "{} registered twice",
                provider.name()
            );
        }
        assert!(ProviderKind::from_name("nosuch").is_none());
    }

    fn sources_error(text: &str) -> String {
        let env = |name: &str| (name == "K").then(|| "k".to_owned());
        let config = Config::from_toml(text, Role::Ingester, &env)
            .expect("the configuration itself is valid");
        Sources::from_config(&config)
            .expect_err("the sources are refused")
            .to_string()
    }

    #[test]
    fn a_source_with_an_unknown_provider_or_without_what_its_provider_needs_is_one_line() {
        let cases = [
            (
                "[[sources]]\nname='a'\nprovider='nosuch'",
                "sources[a].provider: unknown provider \"nosuch\" (one of: taktikal, universign, legalesign, legalesign_event, standard_webhooks, yousign, documenso, docuseal, zoho_sign, boldsign, pandadoc, dropbox_sign, adobe_sign, docusign)",
            ),
            (
                "[[sources]]\nname='a'\nprovider='taktikal'\nsecrets=[]",
                "sources[a]: taktikal needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='universign'",
                "sources[a]: universign needs jwks",
            ),
            (
                "[[sources]]\nname='a'\nprovider='legalesign'",
                "sources[a]: legalesign needs certificate",
            ),
            (
                "[[sources]]\nname='a'\nprovider='legalesign_event'",
                "sources[a]: legalesign_event needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='standard_webhooks'",
                "sources[a]: standard_webhooks needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='standard_webhooks'\nsecrets=['env:K']",
                "sources[a]: secret env:K is not a signing secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='yousign'",
                "sources[a]: yousign needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='documenso'",
                "sources[a]: documenso needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='docuseal'",
                "sources[a]: docuseal needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='zoho_sign'",
                "sources[a]: zoho_sign needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='boldsign'",
                "sources[a]: boldsign needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='pandadoc'",
                "sources[a]: pandadoc needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='dropbox_sign'",
                "sources[a]: dropbox_sign needs at least one secret",
            ),
            (
                "[[sources]]\nname='a'\nprovider='adobe_sign'\nsecrets=['env:K']",
                "sources[a]: adobe_sign needs allow_ips",
            ),
            (
                "[[sources]]\nname='a'\nprovider='docusign'",
                "sources[a]: docusign needs at least one secret",
            ),
        ];
        for (text, expected) in cases {
            let message = sources_error(text);
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }
}
