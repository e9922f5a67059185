//! Documents that webhooks only announce ([`countersign_providers::event::Document::fetch`]), downloaded from the provider's API
//! before the event is recorded.
//!
//! A source with `[sources.api]` gets one client: its base URL, the `Authorization` header its
//! provider makes from the credentials, a timeout per request and a size bound. A download that
//! fails (unreachable, timeout, any status but 200, a body over the bound) fails the message's
//! recording with the reason, so the message goes through the retry queues like any other
//! recording failure and, past the last delay, to the parking lot with that reason. Other
//! messages of the batch are recorded meanwhile. Redirects are followed (Legalesign answers with
//! a short-lived location); the `Authorization` header is not sent to another host.

use std::collections::HashMap;
use std::time::Duration;

use crate::http::{read_bounded, without_query, without_url};
use countersign::config::Config;
use countersign_providers::ProviderKind;
use countersign_providers::event::{ProcessStatus, SigningEvent};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};
use sha2::Digest as _;

/// Downloads for every source that has an API configured.
#[derive(Debug, Default)]
pub struct Fetcher {
    endpoints: HashMap<String, Endpoint>,
}

#[derive(Debug)]
struct Endpoint {
    provider: ProviderKind,
    client: reqwest::Client,
    base_url: String,
    /// The credentials' header (the provider's [`countersign_providers::Provider::api_header`]).
    header: HeaderName,
    authorization: Authorization,
    max_bytes: usize,
}

/// What a source's API requests carry in [`Endpoint::header`].
#[derive(Debug)]
enum Authorization {
    None,
    /// Made from the credentials once (an API key, a token).
    Fixed(HeaderValue),
    /// Access tokens obtained from `[sources.api] token_url`.
    Granted(crate::oauth::TokenGrant),
}

/// Why a request to a provider's API failed: a sentence for operators, without credentials or
/// URLs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}'s API: {reason}")]
pub struct FetchError {
    pub source_name: String,
    pub reason: String,
    /// How long the API asked to wait before asking again (`Retry-After` of a 429 or 5xx, at
    /// most [`MAX_RETRY_AFTER`]): the message's retry waits at least that long.
    pub retry_after: Option<Duration>,
}

/// The longest `Retry-After` taken from an API: a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A failed request to an API: why, and the wait its answer asked for.
#[derive(Debug)]
struct Failure {
    reason: String,
    retry_after: Option<Duration>,
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Self {
            reason,
            retry_after: None,
        }
    }
}

impl Failure {
    fn context(self, what: &str) -> Self {
        Self {
            reason: format!("{what}: {}", self.reason),
            ..self
        }
    }

    fn of(self, source: &str) -> FetchError {
        FetchError {
            source_name: source.to_owned(),
            reason: self.reason,
            retry_after: self.retry_after,
        }
    }
}

/// How `source`'s API requests are authorized: an error names the source whose provider has no
/// API client in Countersign, whose credentials are not a header value, or whose `token_url` its
/// provider does not take.
fn authorization_of(
    source: &countersign_providers::settings::SourceConfig,
    api: &countersign_providers::settings::ApiConfig,
    provider: ProviderKind,
) -> Result<Authorization, String> {
    let Some(credentials) = &api.credentials else {
        return Ok(Authorization::None);
    };
    let no_client = || {
        format!(
            "sources[{}].api: Countersign has no API client for {}",
            source.name, source.provider
        )
    };
    let value = provider
        .api_authorization(credentials.expose())
        .ok_or_else(no_client)?;
    if let Some(token_url) = &api.token_url {
        let scheme = provider.api_token_scheme().ok_or_else(|| {
            format!(
                "sources[{}].api.token_url: {} takes no OAuth access tokens from a token endpoint (the credentials are used as they are)",
                source.name, source.provider
            )
        })?;
        let grant =
            crate::oauth::TokenGrant::new(token_url, credentials.expose(), scheme, api.timeout)
                .map_err(|e| {
                    format!(
                        "sources[{}].api.credentials ({}): {e}",
                        source.name,
                        credentials.label()
                    )
                })?;
        return Ok(Authorization::Granted(grant));
    }
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        format!(
            "sources[{}].api.credentials ({}) cannot be sent in a header",
            source.name,
            credentials.label()
        )
    })?;
    value.set_sensitive(true);
    Ok(Authorization::Fixed(value))
}

impl Fetcher {
    /// One client per source with `[sources.api]`. An error names the source whose provider has
    /// no API client in Countersign, or whose credentials are not a header value.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let mut endpoints = HashMap::new();
        for source in &config.sources {
            let Some(api) = &source.api else { continue };
            let provider = ProviderKind::named(&source.provider)
                .map_err(|e| format!("sources[{}].provider: {e}", source.name))?;
            let authorization = authorization_of(source, api, provider)?;
            let header = HeaderName::from_static(provider.api_header());
            // The HTTP client drops `Authorization` on a redirect to another host by itself; a
            // header of the provider's own it would carry along, so such a redirect is not
            // followed (the answer is then the redirect, an error like any other status).
            let redirects = if header == AUTHORIZATION {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::custom(|attempt| {
                    let same_host = attempt
                        .previous()
                        .last()
                        .is_some_and(|before| same_origin(before, attempt.url()));
                    if attempt.previous().len() >= 10 || !same_host {
                        attempt.stop()
                    } else {
                        attempt.follow()
                    }
                })
            };
            let client = reqwest::Client::builder()
                .redirect(redirects)
                .timeout(api.timeout)
                .connect_timeout(api.timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("countersign-worker/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("sources[{}].api: {e}", source.name))?;
            endpoints.insert(
                source.name.clone(),
                Endpoint {
                    provider,
                    client,
                    base_url: api.base_url.clone(),
                    header,
                    authorization,
                    max_bytes: api.max_document_bytes,
                },
            );
        }
        Ok(Self { endpoints })
    }

    /// Whether `source` has an API configured.
    pub fn has_api(&self, source: &str) -> bool {
        self.endpoints.contains_key(source)
    }

    /// `GET <api.base_url><path>` with `source`'s API: the body of a `200`, or why not. `None`
    /// where the source has no API.
    pub async fn get(&self, source: &str, path: &str) -> Option<Result<Vec<u8>, FetchError>> {
        let endpoint = self.endpoints.get(source)?;
        Some(
            endpoint
                .get(path)
                .await
                .map_err(|failure| failure.of(source)),
        )
    }

    /// Whether `source`'s API is asked to confirm a final state one of `events` claims.
    pub fn witnesses(&self, source: &str, events: &[SigningEvent]) -> bool {
        self.endpoints.get(source).is_some_and(|endpoint| {
            events.iter().any(|e| {
                e.status.is_some_and(ProcessStatus::is_final_claim)
                    && endpoint.provider.state_path(&e.process_key).is_some()
            })
        })
    }

    /// Asks `source`'s API the state of each process whose event claims a final state:
    /// [`Witnessed::Confirmed`] when the API reports every claimed state,
    /// [`Witnessed::Contradicted`] (with the reason) when it reports another final state, or an
    /// earlier one more than [`API_LAG`] after the event (its own time, or its receipt
    /// `received_at` if that is earlier or the event has none); an error when it reports an
    /// earlier state within [`API_LAG`] (the API may lag the webhook), cannot be asked, or gives
    /// no state: the message is retried, and parked with the reason after the last retry.
    pub async fn witness(
        &self,
        source: &str,
        events: &[SigningEvent],
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Witnessed, FetchError> {
        let Some(endpoint) = self.endpoints.get(source) else {
            return Ok(Witnessed::NotAsked);
        };
        let failed = |reason: String| Failure::from(reason).of(source);
        let now = chrono::Utc::now();
        let mut asked = false;
        for event in events {
            let Some(claimed) = event.status.filter(|s| s.is_final_claim()) else {
                continue;
            };
            let Some(path) = endpoint.provider.state_path(&event.process_key) else {
                continue;
            };
            let (status, body) = endpoint
                .ask(&path)
                .await
                .map_err(|failure| failure.of(source))?;
            let reported = endpoint
                .provider
                .api_state(status, &body, now.timestamp())
                .map_err(|reason| failed(format!("state of the process: {reason}")))?
                .ok_or_else(|| failed(format!("GET {path}: HTTP {status}, no state")))?;
            if !claimed.confirmed_by(reported) {
                let reason = format!(
                    "the webhook claims {} for {}; {}'s API reports {}",
                    claimed.as_str(),
                    event.process_key,
                    endpoint.provider.name(),
                    reported.as_str()
                );
                // Another final state can never become the claimed one; an earlier state may
                // (the API may lag the webhook), so the message is asked about again later, but
                // not past API_LAG: a replayed or forged claim is not retried into a failure.
                let since = event
                    .occurred_at
                    .map_or(received_at, |at| at.min(received_at));
                return if reported.is_final_claim() {
                    Ok(Witnessed::Contradicted(reason))
                } else if now - since > API_LAG {
                    Ok(Witnessed::Contradicted(format!(
                        "{reason}, {} minutes after the event",
                        (now - since).num_minutes()
                    )))
                } else {
                    Err(failed(format!("{reason} (not yet: asked again)")))
                };
            }
            asked = true;
        }
        Ok(if asked {
            Witnessed::Confirmed
        } else {
            Witnessed::NotAsked
        })
    }

    /// Whether any document of `events` waits for a download from `source`'s API.
    pub fn wants(&self, source: &str, events: &[SigningEvent]) -> bool {
        self.endpoints.contains_key(source)
            && events
                .iter()
                .flat_map(|e| &e.documents)
                .any(|d| (d.fetch.is_some() || d.fetch_listing.is_some()) && d.content.is_none())
    }

    /// Downloads every announced document of `events` from `source`'s API, in place. Sources
    /// without an API leave them as references.
    pub async fn fill(&self, source: &str, events: &mut [SigningEvent]) -> Result<(), FetchError> {
        let Some(endpoint) = self.endpoints.get(source) else {
            return Ok(());
        };
        let failed = |failure: Failure, what: &str| failure.context(what).of(source);
        // A webhook may name only paths under the API; a whole URL comes only from the API's own
        // listing (below): one in a parsed event is left a reference.
        for document in events.iter_mut().flat_map(|e| e.documents.iter_mut()) {
            if document.fetch.as_deref().is_some_and(is_absolute) {
                document.fetch = None;
            }
        }
        // Listings first: each is replaced by the documents it names.
        for event in events.iter_mut() {
            if !event.documents.iter().any(|d| d.fetch_listing.is_some()) {
                continue;
            }
            let mut expanded = Vec::with_capacity(event.documents.len());
            for document in std::mem::take(&mut event.documents) {
                match (&document.fetch_listing, &document.content) {
                    (Some(listing), None) => {
                        let answer = endpoint
                            .get(listing)
                            .await
                            .map_err(|failure| failed(failure, "document listing"))?;
                        let listed = endpoint
                            .provider
                            .listed_documents(&answer)
                            .map_err(|reason| failed(reason.into(), "document listing"))?;
                        expanded.extend(listed);
                    }
                    _ => expanded.push(document),
                }
            }
            event.documents = expanded;
        }
        for document in events.iter_mut().flat_map(|e| e.documents.iter_mut()) {
            let (Some(path), None) = (&document.fetch, &document.content) else {
                continue;
            };
            let content = if is_absolute(path) {
                endpoint.get_elsewhere(path).await
            } else {
                endpoint.get(path).await
            }
            .map_err(|failure| failed(failure, "document download"))?;
            if let Some(stated_at) = &document.digest_from {
                endpoint
                    .check_stated_digest(source, path, stated_at, &content)
                    .await
                    .map_err(|failure| failed(failure, "document download"))?;
            }
            if is_absolute(path) {
                // The provenance keeps the link without its signature.
                document.fetch = Some(without_query(path));
            }
            document.content = Some(content);
            document.fetched_at = Some(chrono::Utc::now());
        }
        Ok(())
    }
}

/// What the provider's API said of the final states a message's events claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Witnessed {
    /// Nothing was asked: no final state claimed, or no state API for the provider.
    NotAsked,
    /// The API reports every claimed state.
    Confirmed,
    /// The API reports another final state: the reason, for the parking lot.
    Contradicted(String),
}

/// How long a provider's API may lag a webhook: within it, an API that still reports an earlier
/// state than the webhook claims is asked again; past it, the claim is contradicted.
pub const API_LAG: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The most of a state answer read: a request's state is a few kilobytes.
const MAX_STATE_BYTES: usize = 1024 * 1024;

impl Endpoint {
    /// `GET path` with the source's credentials. A granted access token the API refuses (401)
    /// is replaced and the request sent once more.
    async fn send(&self, path: &str) -> Result<reqwest::Response, String> {
        let url = format!("{}/{}", self.base_url, path.trim_start_matches('/'));
        let send = |authorization: Option<HeaderValue>| {
            let mut request = self.client.get(&url);
            if let Some(authorization) = authorization {
                request = request.header(self.header.clone(), authorization);
            }
            async move {
                request
                    .send()
                    .await
                    .map_err(|e| format!("GET {path}: {}", without_url(&e)))
            }
        };
        match &self.authorization {
            Authorization::None => send(None).await,
            Authorization::Fixed(value) => send(Some(value.clone())).await,
            Authorization::Granted(grant) => {
                let token = grant.authorization(None).await?;
                let response = send(Some(token.clone())).await?;
                if response.status() != reqwest::StatusCode::UNAUTHORIZED {
                    return Ok(response);
                }
                let renewed = grant.authorization(Some(&token)).await?;
                send(Some(renewed)).await
            }
        }
    }

    /// Checks downloaded `content` (from `path`) against the sha256 the API states at
    /// `stated_at` ([`countersign_providers::Provider::stated_digest`]): a mismatch is an error;
    /// no stated digest keeps the content unchecked, with a warning.
    async fn check_stated_digest(
        &self,
        source: &str,
        path: &str,
        stated_at: &str,
        content: &[u8],
    ) -> Result<(), Failure> {
        let answer = self
            .get(stated_at)
            .await
            .map_err(|failure| failure.context("the document's stated sha256"))?;
        let stated = self
            .provider
            .stated_digest(&answer)
            .map_err(|reason| Failure::from(reason).context("the document's stated sha256"))?;
        let actual: [u8; 32] = sha2::Sha256::digest(content).into();
        match stated {
            Some(stated) if stated != actual => Err(format!(
                "GET {path}: the content's sha256 {} is not the {} the API states at {stated_at}",
                countersign_providers::hex(&actual),
                countersign_providers::hex(&stated)
            )
            .into()),
            Some(_) => Ok(()),
            None => {
                tracing::warn!(
                    source,
                    path = %countersign::telemetry::Escaped(stated_at),
                    "the provider's API states no sha256 for a downloaded document; kept unchecked"
                );
                Ok(())
            }
        }
    }

    /// `GET url` for a document the API's listing names by a whole URL (DocuSeal's file links):
    /// without the credentials, bounded like any download. Errors name the URL without its query
    /// (a pre-signed link's signature).
    async fn get_elsewhere(&self, url: &str) -> Result<Vec<u8>, Failure> {
        let shown = without_query(url);
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {shown}: {}", without_url(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(refused(&shown, &response));
        }
        let content = read_bounded(response, &format!("GET {shown}"), self.max_bytes).await?;
        if content.is_empty() {
            return Err(format!("GET {shown}: an empty document").into());
        }
        Ok(content)
    }

    /// `GET path` for a state: the status and body of a 2xx or of a client error other than
    /// 429 (the API's word on the process, such as 410 Gone); anything else is an error.
    async fn ask(&self, path: &str) -> Result<(u16, Vec<u8>), Failure> {
        let response = self.send(path).await?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(refused(path, &response));
        }
        let body = read_bounded(response, &format!("GET {path}"), MAX_STATE_BYTES).await?;
        Ok((status.as_u16(), body))
    }

    async fn get(&self, path: &str) -> Result<Vec<u8>, Failure> {
        let response = self.send(path).await?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            // Legalesign: 201 while an archived document is restored (up to 4 hours).
            return Err(refused(path, &response));
        }
        let content = read_bounded(response, &format!("GET {path}"), self.max_bytes).await?;
        if content.is_empty() {
            return Err(format!("GET {path}: an empty document").into());
        }
        Ok(content)
    }
}

/// An answer that is not the one asked for: its status, and its `Retry-After` (said and taken).
fn refused(path: &str, response: &reqwest::Response) -> Failure {
    let status = response.status();
    let said = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok());
    let retry_after = said.and_then(|text| retry_after(text, std::time::SystemTime::now()));
    Failure {
        reason: match said {
            Some(text) => format!("GET {path}: HTTP {status} (Retry-After: {text})"),
            None => format!("GET {path}: HTTP {status}"),
        },
        retry_after,
    }
}

/// Whether a document's `fetch` is a whole URL rather than a path under the API.
fn is_absolute(fetch: &str) -> bool {
    fetch.starts_with("https://") || fetch.starts_with("http://")
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A `Retry-After` value (RFC 9110: delay-seconds or an HTTP date) as a wait from `now`, at most
/// [`MAX_RETRY_AFTER`]; `None` if it is neither, or already past.
fn retry_after(text: &str, now: std::time::SystemTime) -> Option<Duration> {
    let text = text.trim();
    let wait = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(text.parse().unwrap_or(u64::MAX))
    } else {
        httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .ok()?
    };
    (!wait.is_zero()).then(|| wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign::config::Role;

    fn fetcher_for(provider: &str) -> Result<Fetcher, String> {
        fetcher_with(provider, "", "user:secret")
    }

    fn fetcher_with(provider: &str, api: &str, credentials: &str) -> Result<Fetcher, String> {
        let text = format!(
            "[[sources]]\nname = 'a'\nprovider = '{provider}'\n\
             api = {{ base_url = 'https://api.example', credentials = 'env:C'{api} }}\n"
        );
        let credentials = credentials.to_owned();
        let env = move |name: &str| (name == "C").then(|| credentials.clone());
        let config = Config::from_toml(&text, Role::Worker, &env).map_err(|e| e.to_string())?;
        Fetcher::from_config(&config)
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_bounded() {
        let now = httpdate::parse_http_date("Mon, 07 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 5 ", now), Some(Duration::from_secs(5)));
        assert_eq!(
            retry_after("Mon, 07 Dec 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            retry_after("Mon, 07 Dec 2026 09:00:00 GMT", now),
            None,
            "past"
        );
        for nothing in ["", "0", "-5", "soon", "1.5"] {
            assert_eq!(retry_after(nothing, now), None, "{nothing:?}");
        }
    }

    #[test]
    fn an_api_on_a_provider_without_a_client_stops_the_worker_with_the_reason() {
        let fetcher = fetcher_for("legalesign_event").expect("Legalesign has a client");
        let Authorization::Fixed(authorization) = &fetcher.endpoints["a"].authorization else {
            panic!("a fixed authorization")
        };
        assert_eq!(authorization.to_str().unwrap(), "ApiKey user:secret");
        assert!(authorization.is_sensitive());
        assert!(!format!("{fetcher:?}").contains("user:secret"));
        let refused = fetcher_for("standard_webhooks").unwrap_err();
        assert_eq!(
            refused,
            "sources[a].api: standard_webhooks does not use api (Countersign has no API client for it)",
            "refused with the configuration, in both binaries"
        );
    }

    #[test]
    fn a_token_url_is_taken_by_providers_with_oauth_tokens_only() {
        let token_url = ", token_url = 'https://api.na1.adobesign.com/oauth/v2/refresh'";
        let fetcher = fetcher_with("adobe_sign", token_url, "id:secret:refresh").unwrap();
        assert!(matches!(
            fetcher.endpoints["a"].authorization,
            Authorization::Granted(_)
        ));
        assert!(!format!("{fetcher:?}").contains("secret"));
        assert_eq!(
            fetcher_with("yousign", token_url, "id:secret:refresh").unwrap_err(),
            "sources[a].api.token_url: yousign takes no OAuth access tokens from a token endpoint (the credentials are used as they are)"
        );
        assert_eq!(
            fetcher_with("zoho_sign", token_url, "1000.access-token").unwrap_err(),
            "sources[a].api.credentials (env:C): with token_url, credentials are <client_id>:<client_secret>:<refresh_token>"
        );
        assert!(matches!(
            fetcher_with("zoho_sign", "", "1000.access-token")
                .unwrap()
                .endpoints["a"]
                .authorization,
            Authorization::Fixed(_)
        ));
    }
}
