//! The configured endpoints: [`Sources`] turns received bytes into a [`VerifiedWebhook`], the one
//! type the ingester can publish.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::provider::{FUTURE_SKEW, Headers, Origin, Rejection, Reply, Request, Verify};
use crate::registry::ProviderKind;
use crate::settings::{ConfigError, IpNet, SourceConfig};
use crate::signature_memory::{ReplayMemory, Seen};
use crate::support::hex;

/// One configured endpoint: `POST /webhooks/{name}`.
pub struct Source {
    name: String,
    provider: ProviderKind,
    max_body_bytes: usize,
    allowed: Vec<IpNet>,
    verifier: Box<dyn Verify>,
    /// The signatures this source has used (for schemes whose signature does not cover the
    /// body): one memory per source, so that one source's traffic never evicts another's.
    replay: std::sync::Arc<ReplayMemory>,
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

/// What bounds every source: the ingester's settings (`ingester.max_body_bytes`,
/// `ingester.replay_memory_entries`).
#[derive(Debug, Clone, Copy)]
pub struct SourceLimits {
    /// The body limit of a source that sets none (its provider's own, where tighter, wins).
    pub max_body_bytes: usize,
    /// How many signatures each source remembers (for schemes that do not sign the body).
    pub replay_memory_entries: usize,
}

/// The configured sources, and the memory of signatures they have used.
#[derive(Debug)]
pub struct Sources {
    by_name: HashMap<String, Source>,
}

impl Sources {
    /// The configured sources with their verifiers. An error names the source whose provider
    /// is unknown or whose provider-specific settings (keys, files) are missing or unusable.
    pub fn new(sources: &[SourceConfig], limits: SourceLimits) -> Result<Self, ConfigError> {
        let by_name = sources
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
                        let default = limits.max_body_bytes;
                        provider
                            .default_max_body_bytes()
                            .map_or(default, |own| own.min(default))
                    }),
                    allowed: s.allow_ips.clone(),
                    verifier,
                    replay: std::sync::Arc::new(ReplayMemory::new(limits.replay_memory_entries)),
                };
                Ok((s.name.clone(), source))
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self { by_name })
    }

    /// Takes over `old`'s memory of used signatures for each source that keeps its name and
    /// provider (a configuration reload): a signature seen before the reload is still known
    /// after it.
    pub fn keep_memories_of(&mut self, old: &Sources) {
        for (name, source) in &mut self.by_name {
            if let Some(before) = old.by_name.get(name)
                && before.provider.name() == source.provider.name()
            {
                source.replay = before.replay.clone();
            }
        }
    }

    /// The sources' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Each source whose key material states an end of validity, with that end.
    pub fn expiries(&self) -> Vec<(&str, std::time::SystemTime)> {
        self.by_name
            .values()
            .filter_map(|s| Some((s.name.as_str(), s.verifier.expires_at()?)))
            .collect()
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
        crate::forwarded::check_forwarded(&verified.signature_headers, &verified.event_type)?;

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
    /// The provider's test event ([`crate::Provider::is_test_event`]).
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
