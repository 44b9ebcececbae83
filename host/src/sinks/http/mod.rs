//! The `http` sink: each batch is one POST of NDJSON (one event, or window
//! result, per line) with `Idempotency-Key: <pipeline>:<sink>:<batch id>`,
//! identical on every retry of the batch. 2xx delivers; 429, 5xx, a
//! timeout or a connection error retry (honouring `Retry-After`); any other
//! status refuses the batch (its events go to the DLQ). At least once.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::spec::SinkSpec;
use super::{Batch, Delivery, Sink};

/// How long one POST may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The part of a refusing answer's body kept in the error.
const BODY_IN_ERROR: usize = 200;

/// An HTTP endpoint (the URL and header values may be secrets: they are
/// never put in an error or a log line).
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
}

impl HttpSink {
    /// Reads the URL and header values (from the environment where the spec
    /// names variables).
    pub fn new(spec: &SinkSpec) -> Result<HttpSink, String> {
        let url = spec.resolve_url()?;
        if !url.starts_with("http://") {
            // Checked at PUT for a literal `url`; `url_env`'s value only now (and never shown).
            return Err(format!("the URL in {} must start with http:// (https:// is not supported yet: no TLS client in this build)", spec.url_env.as_deref().unwrap_or("url")));
        }
        let mut headers = HeaderMap::new();
        for (name, env) in spec.headers_env.iter().flatten() {
            let value = std::env::var(env).map_err(|_| format!("environment variable {env} (headers_env.{name}) is not set"))?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
            let value = HeaderValue::from_str(&value).map_err(|_| format!("environment variable {env} does not hold a valid header value"))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {}", e.without_url()))?;
        Ok(HttpSink { client, url, headers })
    }
}

/// `Retry-After` in seconds (an HTTP date is not honoured: the backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What an answer's status means for the batch.
pub fn classify(status: StatusCode, after: Option<Duration>, body: &str) -> Delivery {
    let shown: String = body.chars().take(BODY_IN_ERROR).collect();
    if status.is_success() {
        Delivery::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Delivery::Retry { error: format!("the endpoint answered {status}: {shown}"), after }
    } else {
        Delivery::Refused { error: format!("the endpoint answered {status}: {shown}") }
    }
}

#[async_trait]
impl Sink for HttpSink {
    async fn deliver(&mut self, batch: &Batch) -> Delivery {
        let key = match HeaderValue::from_str(&batch.key) {
            Ok(key) => key,
            Err(_) => return Delivery::Refused { error: format!("batch key {:?} is not a header value", batch.key) },
        };
        let sent = self.client.post(&self.url).headers(self.headers.clone()).header("Idempotency-Key", key).body(batch.ndjson()).send().await;
        match sent {
            Ok(answer) => {
                let status = answer.status();
                let after = retry_after(answer.headers());
                let body = if status.is_success() { String::new() } else { answer.text().await.unwrap_or_default() };
                classify(status, after, &body)
            }
            // `without_url`: the URL may hold a secret from `url_env`.
            Err(e) => Delivery::Retry { error: format!("POST failed: {}", e.without_url()), after: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(StatusCode::NO_CONTENT, None, ""), Delivery::Delivered);
        let after = Some(Duration::from_secs(3));
        assert!(matches!(classify(StatusCode::TOO_MANY_REQUESTS, after, ""), Delivery::Retry { after: Some(a), .. } if a.as_secs() == 3));
        assert!(matches!(classify(StatusCode::SERVICE_UNAVAILABLE, None, "down"), Delivery::Retry { error, .. } if error.contains("503")));
        assert!(matches!(classify(StatusCode::BAD_REQUEST, None, "no"), Delivery::Refused { error } if error.contains("400") && error.contains("no")));
        assert!(matches!(classify(StatusCode::NOT_FOUND, None, ""), Delivery::Refused { .. }));
    }
}
