//! Access tokens the worker obtains itself: the OAuth 2.0 refresh-token grant (RFC 6749 §6) of
//! a source whose `[sources.api]` has a `token_url`.
//!
//! The credentials are `<client_id>:<client_secret>:<refresh_token>`. The first request asks the
//! token endpoint (`POST`, form `grant_type=refresh_token`, `client_id`, `client_secret`,
//! `refresh_token`) for an access token; it is used until shortly before the `expires_in` the
//! endpoint stated (an hour where it states none), or until the API answers 401 with it — then
//! a new one is asked for, once per request. One refresh at a time per source: requests that
//! need a token meanwhile wait for it. The token endpoint's redirects are never followed (the
//! form carries the client secret), and neither the form nor the tokens reach a log or an error.

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;

/// The longest answer read from a token endpoint.
const MAX_TOKEN_ANSWER_BYTES: usize = 64 * 1024;

/// An access token's life when the endpoint states none: an hour, as Zoho's and Adobe's.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A token is replaced this long before it expires (at most half its life).
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// A source's refresh-token grant and the access token it last gave.
pub struct TokenGrant {
    url: String,
    /// `grant_type`, `client_id`, `client_secret`, `refresh_token`.
    form: Vec<(&'static str, String)>,
    scheme: &'static str,
    client: reqwest::Client,
    current: tokio::sync::Mutex<Option<Token>>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("url", &self.url)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

struct Token {
    value: HeaderValue,
    renew_at: Instant,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
}

impl TokenGrant {
    /// The grant of `credentials` (`<client_id>:<client_secret>:<refresh_token>`) at `url`;
    /// tokens are sent as `<scheme> <token>`. An error says what is wrong without the secret.
    pub fn new(
        url: &str,
        credentials: &[u8],
        scheme: &'static str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let text = std::str::from_utf8(credentials)
            .map_err(|_| "not UTF-8 text".to_owned())?
            .trim();
        let mut parts = text.splitn(3, ':');
        let (Some(client_id), Some(client_secret), Some(refresh_token)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(
                "with token_url, credentials are <client_id>:<client_secret>:<refresh_token>"
                    .to_owned(),
            );
        };
        if [client_id, client_secret, refresh_token]
            .iter()
            .any(|part| part.is_empty())
        {
            return Err(
                "with token_url, credentials are <client_id>:<client_secret>:<refresh_token>, none of them empty"
                    .to_owned(),
            );
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("countersign-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            url: url.to_owned(),
            form: vec![
                ("grant_type", "refresh_token".to_owned()),
                ("client_id", client_id.to_owned()),
                ("client_secret", client_secret.to_owned()),
                ("refresh_token", refresh_token.to_owned()),
            ],
            scheme,
            client,
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// The `Authorization` value to send: the current token, or a new one. `stale` is a value
    /// the API has just refused (401): a current token equal to it is replaced.
    pub async fn authorization(&self, stale: Option<&HeaderValue>) -> Result<HeaderValue, String> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.renew_at
            && stale != Some(&token.value)
        {
            return Ok(token.value.clone());
        }
        let token = self.refresh().await?;
        let value = token.value.clone();
        *current = Some(token);
        Ok(value)
    }

    async fn refresh(&self) -> Result<Token, String> {
        let shown = crate::http::without_query(&self.url);
        let failed = |what: String| format!("access token from {shown}: {what}");
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&self.form)
            .send()
            .await
            .map_err(|e| failed(crate::http::without_url(&e)))?;
        let status = response.status();
        let body =
            crate::http::read_bounded(response, &format!("POST {shown}"), MAX_TOKEN_ANSWER_BYTES)
                .await?;
        let answer: Option<TokenAnswer> = serde_json::from_slice(&body).ok();
        // Zoho answers a refused grant with 200 and `{"error": "invalid_code"}`.
        let error = answer
            .as_ref()
            .and_then(|a| a.error.as_deref())
            .map(|e| format!(" (error: {})", printable_code(e)))
            .unwrap_or_default();
        let Some(TokenAnswer {
            access_token: Some(access_token),
            expires_in,
            ..
        }) = answer.filter(|_| status == reqwest::StatusCode::OK)
        else {
            return Err(failed(format!("HTTP {status}{error}, no access_token")));
        };
        let mut value = HeaderValue::from_str(&format!("{} {}", self.scheme, access_token.trim()))
            .map_err(|_| failed("the access_token cannot be sent in a header".to_owned()))?;
        value.set_sensitive(true);
        let lifetime = expires_in
            .as_ref()
            .and_then(|e| e.as_u64().or_else(|| e.as_str()?.trim().parse().ok()))
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        tracing::info!(
            token_url = %countersign::telemetry::Escaped(&shown),
            expires_in_seconds = lifetime.as_secs(),
            "obtained an API access token"
        );
        Ok(Token {
            value,
            renew_at: Instant::now() + lifetime - REFRESH_AHEAD.min(lifetime / 2),
        })
    }
}

/// An OAuth error code as shown in a reason: its first 64 characters, letters, digits and
/// `_-. ` only (a code, never free text from the endpoint).
fn printable_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_-. ".contains(*c))
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_three_parts_and_never_printed() {
        let grant = TokenGrant::new(
            "https://accounts.zoho.eu/oauth/v2/token",
            b"1000.CLIENT:s3cret:1000.refresh.token\n",
            "Zoho-oauthtoken",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(grant.form[1], ("client_id", "1000.CLIENT".to_owned()));
        assert_eq!(
            grant.form[3],
            ("refresh_token", "1000.refresh.token".to_owned())
        );
        let shown = format!("{grant:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("refresh.token"),
            "{shown}"
        );
        for bad in [
            &b"only-a-token"[..],
            b"id:secret",
            b"id::token",
            b"\xff:a:b",
        ] {
            let error =
                TokenGrant::new("https://x", bad, "Bearer", Duration::from_secs(1)).unwrap_err();
            assert!(
                !error.contains("secret:") && !error.contains("token\""),
                "{error}"
            );
        }
        assert_eq!(
            printable_code("invalid_code\n<script>"),
            "invalid_codescript"
        );
    }
}
