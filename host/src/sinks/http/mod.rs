//! The `http` sink: each batch is one POST of NDJSON (one event, or window
//! result, per line) with `Idempotency-Key: <pipeline>:<sink>:<batch id>`,
//! identical on every retry of the batch. 2xx delivers; 429, 5xx, a
//! timeout or a connection error retry (honouring `Retry-After`); any other
//! status refuses the batch (its events go to the DLQ). At least once.
//! `https://` URLs go over TLS (rustls), trusting the system's roots and
//! the certificates of the spec's `ca_file` (a private CA); a failed
//! handshake retries, naming the problem (e.g. an untrusted certificate).

use std::error::Error as _;
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
        if !url.starts_with("http://") && !url.starts_with("https://") {
            // Checked at PUT for a literal `url`; `url_env`'s value only now (and never shown).
            return Err(format!("the URL in {} must start with http:// or https://", spec.url_env.as_deref().unwrap_or("url")));
        }
        let mut headers = HeaderMap::new();
        for (name, env) in spec.headers_env.iter().flatten() {
            let value = std::env::var(env).map_err(|_| format!("environment variable {env} (headers_env.{name}) is not set"))?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
            let value = HeaderValue::from_str(&value).map_err(|_| format!("environment variable {env} does not hold a valid header value"))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        let mut client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).pool_max_idle_per_host(4);
        for certificate in spec.ca_file.as_deref().map(load_ca_file).transpose()?.into_iter().flatten() {
            client = client.add_root_certificate(certificate);
        }
        let client = client.build().map_err(|e| format!("cannot make an HTTP client: {}", e.without_url()))?;
        Ok(HttpSink { client, url, headers })
    }
}

/// The certificates of a sink's `ca_file` (PEM, one or more), trusted
/// besides the system's roots: how an endpoint with a private CA is reached.
pub fn load_ca_file(path: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA file {path:?}: {e}"))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("the CA file {path:?} is not PEM: {e}"))?;
    if certificates.is_empty() {
        return Err(format!("the CA file {path:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certificates)
}

/// Why a POST got no answer, without the URL (it may hold a secret): the
/// error and its causes; a failed TLS handshake says so first, with what
/// rustls refused (e.g. `invalid peer certificate: UnknownIssuer`).
fn send_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut causes = vec![error.to_string()];
    let mut tls = None;
    let mut next = error.source();
    // Bounded: an error's causes are a short chain.
    for _ in 0..16 {
        let Some(cause) = next else { break };
        tls = tls.or_else(|| rustls_error(cause));
        causes.push(cause.to_string());
        next = cause.source();
    }
    match tls {
        Some(tls) if matches!(tls, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            format!("TLS handshake failed: {tls} (is the endpoint's CA among the system's roots or in the sink's `ca_file`?)")
        }
        Some(tls) => format!("TLS handshake failed: {tls}"),
        None => format!("POST failed: {}", causes.join(": ")),
    }
}

/// The rustls error `error` is, or carries: it travels inside an
/// `io::Error` (inside another one, as the connector wraps it), whose
/// `source` skips it.
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut at = error;
    // Bounded: a few wrappers at most.
    for _ in 0..8 {
        if let Some(tls) = at.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        at = at.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
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
            Err(e) => Delivery::Retry { error: send_error(e), after: None },
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
