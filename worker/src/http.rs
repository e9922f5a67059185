//! What every request to a provider's API shares: bounded answers, and errors and URLs shown
//! without what they may carry (a pre-signed link's signature, a redirect's token).

use futures_util::StreamExt;

/// `url` without its query and fragment: what logs, reasons and the provenance column show.
pub fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_owned()
}

/// The body of `response`, refused past `max_bytes` (announced or read); errors start with
/// `what` (`GET /path`).
pub async fn read_bounded(
    response: reqwest::Response,
    what: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, String> {
    let too_large = || {
        format!(
            "{what}: the answer is larger than its bound ({max_bytes} bytes; documents: api.max_document_bytes)"
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > max_bytes as u64)
    {
        return Err(too_large());
    }
    let mut content = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("{what}: {}", without_url(&e)))?;
        if content.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        content.extend_from_slice(&chunk);
    }
    Ok(content)
}

/// A reqwest error's text without its URL (a redirect's short-lived location can carry a token).
pub fn without_url(error: &reqwest::Error) -> String {
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
