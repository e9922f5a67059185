//! The provider contract: what a provider is ([`Provider`]), what it makes for a source
//! ([`Verify`]), what it can say to reconciliation ([`Reconcile`]), and what a verifier returns.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::event::{ParseError, SigningEvent};
use crate::settings::{Setting, SourceConfig};

/// The shortest signing secret accepted where a provider does not say otherwise: a key that a
/// person typed by hand or a placeholder left in (`"  "`, `"\n\n"`, `changeme`) is refused at start.
pub const MIN_SECRET_BYTES: usize = 16;

/// Clock skew tolerated on signed timestamps that lie in the future.
pub const FUTURE_SKEW: Duration = Duration::from_secs(300);

/// One e-signature provider's webhooks: how they are verified, answered and read.
pub trait Provider: Send + Sync + 'static {
    /// The `provider` of a source in the configuration, and the `x-provider` message header.
    fn name(&self) -> &'static str;

    /// The keys of a source's configuration this provider reads, besides those every source
    /// has: any other of [`Setting::ALL`] on its source is refused at start, naming the key.
    fn settings(&self) -> &'static [Setting];

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
    /// `x-test` (the message contract's test header), archived, and never projected as a real signing.
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

    /// The request header that carries [`Provider::api_authorization`]'s value: `authorization`
    /// unless the provider's API takes its key in a header of its own (BoldSign's `x-api-key`).
    /// Redirects to another host never carry either.
    fn api_header(&self) -> &'static str {
        "authorization"
    }

    /// The `Authorization` scheme of an access token the worker obtains itself from
    /// `[sources.api] token_url` (an OAuth refresh-token grant: Zoho Sign's `Zoho-oauthtoken`,
    /// Acrobat Sign's `Bearer`); `None` where the provider's API takes no such token, and a
    /// `token_url` is refused.
    fn api_token_scheme(&self) -> Option<&'static str> {
        None
    }

    /// The documents a listing of the provider's API names ([`crate::event::Document`]'s
    /// `fetch_listing`), each with the path of its content.
    fn listed_documents(&self, _listing: &[u8]) -> Result<Vec<crate::event::Document>, String> {
        Err(format!("{} lists no documents", self.name()))
    }

    /// The sha256 a provider's answer to [`crate::event::Document::digest_from`] states for the
    /// document's content: `Ok(None)` where it states none (the content is kept unchecked), an
    /// error where the answer cannot be read.
    fn stated_digest(&self, _answer: &[u8]) -> Result<Option<[u8; 32]>, String> {
        Err(format!("{} states no document digests", self.name()))
    }

    /// Where the provider's API tells the current state of process `process_key`, relative to
    /// `api.base_url`: the worker asks it before recording a final state a webhook claims
    /// (all signed, completed, canceled, expired) and parks a claim it contradicts. `None` where
    /// Countersign does not ask (the default).
    fn state_path(&self, _process_key: &str) -> Option<String> {
        None
    }

    /// The state in the API's answer (HTTP `status`, `body`) to [`Provider::state_path`], at
    /// `now` (Unix seconds, for deadlines the answer states): `Ok(None)` where the answer is no
    /// state (the worker asks again later), an error where it cannot be read.
    fn api_state(
        &self,
        _status: u16,
        _body: &[u8],
        _now: i64,
    ) -> Result<Option<crate::event::ProcessStatus>, String> {
        Err(format!("{} has no state API", self.name()))
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

    /// When the key material this verifier was made with stops being valid (a certificate's
    /// `notAfter`): `None` where it states no end. Exported as a metric so that an alert fires
    /// well before verification would start failing.
    fn expires_at(&self) -> Option<std::time::SystemTime> {
        None
    }

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
    /// The same, for a listing that cannot be asked for a time range: none past a page that
    /// reaches back before `from` (the listing is newest first). [`Reconcile::next_path`] unless
    /// the provider says otherwise.
    fn next_path_since(
        &self,
        path: &str,
        answer: &[u8],
        _from: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        self.next_path(path, answer)
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

impl Gap {
    /// The gap of one missing event of type `event` (the body a provider's parser reads), whose
    /// missing entry is named by the event type.
    pub fn of_event(
        process_key: String,
        unknown_process: bool,
        event: &'static str,
        body: Vec<u8>,
    ) -> Self {
        Self {
            process_key,
            unknown_process,
            missing: vec![event.to_owned()],
            body,
            event_type: event,
        }
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
    Oversized(#[from] crate::forwarded::Oversized),
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
            Rejection::Oversized(crate::forwarded::Oversized::EventType { .. }) => 400,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::REGISTRY;

    /// What a provider declares it reads agrees with what it does: `api` where it has an API
    /// client, `reconcile` where it can reconcile, each key at most once.
    #[test]
    fn each_provider_declares_the_settings_it_reads() {
        for provider in REGISTRY {
            let settings = provider.settings();
            let declares = |s: Setting| settings.contains(&s);
            assert_eq!(
                declares(Setting::Api),
                provider.api_authorization(b"user:secret").is_some(),
                "{}: api",
                provider.name()
            );
            assert_eq!(
                declares(Setting::Reconcile),
                provider.reconcile().is_some(),
                "{}: reconcile",
                provider.name()
            );
            for setting in Setting::ALL {
                assert!(
                    settings.iter().filter(|s| **s == setting).count() <= 1,
                    "{}: {} twice",
                    provider.name(),
                    setting.key()
                );
            }
        }
    }
}
