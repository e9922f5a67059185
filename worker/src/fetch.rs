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

use countersign::config::Config;
use countersign_providers::ProviderKind;
use countersign_providers::event::SigningEvent;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};

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
    authorization: Option<HeaderValue>,
    max_bytes: usize,
}

/// Why a request to a provider's API failed: a sentence for operators, without credentials or
/// URLs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}'s API: {reason}")]
pub struct FetchError {
    pub source_name: String,
    pub reason: String,
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
            let authorization = match &api.credentials {
                None => None,
                Some(credentials) => {
                    let value = provider
                        .api_authorization(credentials.expose())
                        .ok_or_else(|| {
                            format!(
                                "sources[{}].api: Countersign has no API client for {}",
                                source.name, source.provider
                            )
                        })?;
                    let mut value = HeaderValue::from_str(&value).map_err(|_| {
                        format!(
                            "sources[{}].api.credentials ({}) cannot be sent in a header",
                            source.name,
                            credentials.label()
                        )
                    })?;
                    value.set_sensitive(true);
                    Some(value)
                }
            };
            let client = reqwest::Client::builder()
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
        Some(endpoint.get(path).await.map_err(|reason| FetchError {
            source_name: source.to_owned(),
            reason,
        }))
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
        let failed = |reason: String| FetchError {
            source_name: source.to_owned(),
            reason,
        };
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
                            .map_err(|reason| failed(format!("document listing: {reason}")))?;
                        let listed = endpoint
                            .provider
                            .listed_documents(&answer)
                            .map_err(|reason| failed(format!("document listing: {reason}")))?;
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
            let content = endpoint.get(path).await.map_err(|reason| FetchError {
                source_name: source.to_owned(),
                reason: format!("document download: {reason}"),
            })?;
            document.content = Some(content);
        }
        Ok(())
    }
}

impl Endpoint {
    async fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}/{}", self.base_url, path.trim_start_matches('/'));
        let mut request = self.client.get(&url);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("GET {path}: {}", without_url(&e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" (Retry-After: {v})"))
                .unwrap_or_default();
            // Legalesign: 201 while an archived document is restored (up to 4 hours).
            return Err(format!("GET {path}: HTTP {status}{retry_after}"));
        }
        if response
            .content_length()
            .is_some_and(|length| length > self.max_bytes as u64)
        {
            return Err(format!(
                "GET {path}: the document is larger than api.max_document_bytes ({})",
                self.max_bytes
            ));
        }
        let mut content = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("GET {path}: {}", without_url(&e)))?;
            if content.len() + chunk.len() > self.max_bytes {
                return Err(format!(
                    "GET {path}: the document is larger than api.max_document_bytes ({})",
                    self.max_bytes
                ));
            }
            content.extend_from_slice(&chunk);
        }
        if content.is_empty() {
            return Err(format!("GET {path}: an empty document"));
        }
        Ok(content)
    }
}

/// A reqwest error's text without its URL (a redirect's short-lived location can carry a token).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_redirect() {
        "too many redirects"
    } else if error.is_body() || error.is_decode() {
        "the response body broke off"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign::config::Role;

    fn fetcher_for(provider: &str) -> Result<Fetcher, String> {
        let text = format!(
            "[[sources]]\nname = 'a'\nprovider = '{provider}'\n\
             api = {{ base_url = 'https://api.example', credentials = 'env:C' }}\n"
        );
        let env = |name: &str| (name == "C").then(|| "user:secret".to_owned());
        let config = Config::from_toml(&text, Role::Worker, &env).map_err(|e| e.to_string())?;
        Fetcher::from_config(&config)
    }

    #[test]
    fn an_api_on_a_provider_without_a_client_stops_the_worker_with_the_reason() {
        let fetcher = fetcher_for("legalesign_event").expect("Legalesign has a client");
        let authorization = fetcher.endpoints["a"].authorization.as_ref().unwrap();
        assert_eq!(authorization.to_str().unwrap(), "ApiKey user:secret");
        assert!(authorization.is_sensitive());
        assert!(!format!("{fetcher:?}").contains("user:secret"));
        let refused = fetcher_for("yousign").unwrap_err();
        assert_eq!(
            refused,
            "sources[a].api: yousign does not use api (Countersign has no API client for it)",
            "refused with the configuration, in both binaries"
        );
    }
}
