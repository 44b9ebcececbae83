//! The `sinks` part of a pipeline spec (API.md, "Sinks"), parsed and
//! checked: every problem names the field at fault. Secrets are never in
//! the spec: it names environment variables (`url_env`, `headers_env`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::SinkSource;
use crate::engine::spec::{valid_name, RetryPolicy};

/// Most sinks per pipeline.
pub const MAX_SINKS: usize = 16;
/// Largest `batch_max`.
pub const MAX_BATCH: usize = 10_000;

/// The kinds of sink (one folder each under `sinks/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Rows in a Postgres table, exactly once.
    Postgres,
    /// Batched NDJSON POSTs, at least once.
    Http,
    /// JetStream messages, one per event, at least once (de-duplicated by id).
    Nats,
}

impl SinkKind {
    /// The spec's and the API's name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Postgres => "postgres",
            SinkKind::Http => "http",
            SinkKind::Nats => "nats",
        }
    }
}

/// One sink of a pipeline spec, as stored (every field of every kind; the
/// check refuses a field that does not belong to the kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// `[a-z0-9-]{1,64}`, unique in the spec: the DLQ's `stage: "sink:<name>"`.
    pub name: String,
    /// Which destination (one folder per kind).
    pub kind: SinkKind,
    /// `output` (default) or `window:<name>`.
    #[serde(default = "default_from")]
    pub from: String,
    /// Most events per delivery.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// How long a partial batch waits for more events.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// Retries of a retryable failure before the batch goes to the DLQ.
    #[serde(default = "default_retry")]
    pub retry: RetryPolicy,
    /// The destination (postgres, http, nats), written in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable holding the destination URL (its value is a
    /// secret: never stored, answered or logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// postgres: the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// postgres: column → event field (`id`, `type`, `source`, `timestamp`,
    /// `data`, `data.<path>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<BTreeMap<String, String>>,
    /// http: header → the environment variable holding its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_env: Option<BTreeMap<String, String>>,
    /// http: a PEM file of CA certificates trusted besides the system's
    /// roots for an `https://` URL (a private CA). Not in API.md: an addition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// nats: the subject each event is published on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

fn default_from() -> String {
    "output".into()
}

fn default_batch_max() -> usize {
    1_000
}

fn default_batch_ms() -> u64 {
    100
}

/// A sink's default retries: more patient than a stage's (a destination's
/// outage lasts longer than a plugin's hiccup): 10 tries over ~20 s.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 10, initial_backoff_ms: 100, max_backoff_ms: 5_000 }
}

/// The event fields a postgres column may take (besides `data.<path>`).
const FIELDS: [&str; 5] = ["id", "type", "source", "timestamp", "data"];

/// `[A-Za-z_][A-Za-z0-9_]*`: a Postgres identifier Sluice quotes as is.
fn valid_ident(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= 63
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_env_name(name: &str) -> bool {
    valid_ident(name) && name.len() <= 128
}

/// A URL carrying a password (`scheme://user:password@host`): a secret
/// that would be stored and answered, so it must come from `url_env`.
fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

impl SinkSpec {
    /// What the sink reads.
    pub fn source(&self) -> SinkSource {
        match self.from.strip_prefix("window:") {
            Some(window) => SinkSource::Window(window.to_string()),
            None => SinkSource::Output,
        }
    }

    /// Checks the sink (at `sinks[i]`) against its kind; `windows` are the
    /// spec's window names (what `from: window:<name>` may name).
    pub fn validate(&self, at: &str, windows: &[&str]) -> Result<(), String> {
        let bad = |field: &str, why: String| Err(format!("invalid pipeline spec at `{at}.{field}`: {why}"));
        if !valid_name(&self.name) {
            return bad("name", format!("{:?} must match [a-z0-9-]{{1,64}}", self.name));
        }
        if self.from != "output" {
            match self.from.strip_prefix("window:") {
                Some(window) if windows.contains(&window) => {}
                Some(window) => return bad("from", format!("no window {window:?} in this spec's `windows`")),
                None => return bad("from", format!("{:?} must be \"output\" or \"window:<window name>\"", self.from)),
            }
        }
        if self.batch_max == 0 || self.batch_max > MAX_BATCH {
            return bad("batch_max", format!("must be 1 to {MAX_BATCH}"));
        }
        if self.batch_ms > 60_000 {
            return bad("batch_ms", "must be 0 to 60000".into());
        }
        let retry = &self.retry;
        if retry.max_attempts == 0 || retry.max_attempts > 100 {
            return bad("retry.max_attempts", "must be 1 to 100".into());
        }
        if retry.initial_backoff_ms == 0 || retry.max_backoff_ms < retry.initial_backoff_ms || retry.max_backoff_ms > 3_600_000 {
            return bad("retry", "need 0 < initial_backoff_ms <= max_backoff_ms <= 3600000".into());
        }
        match (&self.url, &self.url_env) {
            (Some(_), Some(_)) => return bad("url_env", "give `url` or `url_env`, not both".into()),
            (None, None) => return bad("url", format!("a {} sink needs `url` or `url_env`", self.kind.as_str())),
            (Some(url), None) if has_password(url) => {
                return bad("url", "holds a password: put the URL in an environment variable and name it in `url_env`, so the secret is not stored or answered".into())
            }
            (None, Some(env)) if !valid_env_name(env) => return bad("url_env", format!("{env:?} is not an environment variable name")),
            _ => {}
        }
        let kind = self.kind.as_str();
        let only = |field: &str, present: bool, kinds: &str| -> Result<(), String> {
            if present {
                return Err(format!("invalid pipeline spec at `{at}.{field}`: only a {kinds} sink takes `{field}`, not a {kind} sink"));
            }
            Ok(())
        };
        only("table", self.table.is_some() && self.kind != SinkKind::Postgres, "postgres")?;
        only("columns", self.columns.is_some() && self.kind != SinkKind::Postgres, "postgres")?;
        only("headers_env", self.headers_env.is_some() && self.kind != SinkKind::Http, "http")?;
        only("ca_file", self.ca_file.is_some() && self.kind != SinkKind::Http, "http")?;
        only("subject", self.subject.is_some() && self.kind != SinkKind::Nats, "nats")?;
        match self.kind {
            SinkKind::Postgres => {
                let Some(table) = &self.table else { return bad("table", "a postgres sink needs `table`".into()) };
                if !table.split('.').all(valid_ident) || table.split('.').count() > 2 {
                    return bad("table", format!("{table:?} must be `name` or `schema.name`, each [A-Za-z_][A-Za-z0-9_]*"));
                }
                if let Some(columns) = &self.columns {
                    if self.from != "output" {
                        return bad("columns", "window results have fixed columns (window, group, start, end, result): leave `columns` out".into());
                    }
                    if columns.is_empty() {
                        return bad("columns", "must map at least one column".into());
                    }
                    for (column, field) in columns {
                        if !valid_ident(column) {
                            return bad("columns", format!("column {column:?} must match [A-Za-z_][A-Za-z0-9_]*"));
                        }
                        let path_ok = field.strip_prefix("data.").is_some_and(|p| !p.is_empty() && p.split('.').all(|s| !s.is_empty()));
                        if !FIELDS.contains(&field.as_str()) && !path_ok {
                            return bad(
                                &format!("columns.{column}"),
                                format!("{field:?} must be one of id, type, source, timestamp, data or data.<path>"),
                            );
                        }
                    }
                }
            }
            SinkKind::Http => {
                if let Some(url) = &self.url {
                    if !url.starts_with("http://") && !url.starts_with("https://") {
                        return bad("url", format!("{url:?} must start with http:// or https://"));
                    }
                }
                if let Some(path) = &self.ca_file {
                    if path.is_empty() || path.len() > 4096 {
                        return bad("ca_file", "must be the path of a PEM file (1 to 4096 characters)".into());
                    }
                }
                for (header, env) in self.headers_env.iter().flatten() {
                    if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                        return bad("headers_env", format!("{header:?} is not a header name"));
                    }
                    if !valid_env_name(env) {
                        return bad(&format!("headers_env.{header}"), format!("{env:?} is not an environment variable name"));
                    }
                }
            }
            SinkKind::Nats => {
                let Some(subject) = &self.subject else { return bad("subject", "a nats sink needs `subject`".into()) };
                if subject.is_empty() || subject.len() > 256 || subject.bytes().any(|b| b.is_ascii_whitespace() || b == b'*' || b == b'>') {
                    return bad("subject", format!("{subject:?} must be a NATS subject without spaces or wildcards"));
                }
                if let Some(url) = &self.url {
                    if !url.starts_with("nats://") {
                        return bad("url", format!("{url:?} must start with nats://"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The environment variables the sink reads (`url_env`, `headers_env`
    /// values), in spec order.
    pub fn env_names(&self) -> Vec<&str> {
        self.url_env.iter().map(String::as_str).chain(self.headers_env.iter().flat_map(|h| h.values().map(String::as_str))).collect()
    }

    /// The environment variables it names that are not set here (a spec
    /// naming one is refused at PUT, naming it).
    pub fn missing_env(&self) -> Vec<&str> {
        self.env_names().into_iter().filter(|name| std::env::var_os(name).is_none()).collect()
    }

    /// The destination URL: `url`, or the value of `url_env` (a secret).
    pub fn resolve_url(&self) -> Result<String, String> {
        match (&self.url, &self.url_env) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(env)) => std::env::var(env).map_err(|_| format!("environment variable {env} (url_env) is not set")),
            (None, None) => Err("no url".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> SinkSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn checks_each_kind() {
        let ok = parse(r#"{"name":"warehouse","kind":"postgres","url_env":"SLUICE_PG_URL","table":"page_views","columns":{"id":"id","url":"data.url"}}"#);
        assert_eq!(ok.validate("sinks[0]", &[]), Ok(()));
        assert_eq!(ok.batch_max, 1000);
        assert_eq!(ok.retry, default_retry());
        let cases = [
            (r#"{"name":"a","kind":"postgres","url":"postgres://u:secret@h/db","table":"t"}"#, "sinks[0].url`: holds a password"),
            (r#"{"name":"a","kind":"postgres","url":"postgres://h/db"}"#, "needs `table`"),
            (r#"{"name":"a","kind":"postgres","url":"postgres://h/db","table":"t","columns":{"c":"data."}}"#, "columns.c"),
            (r#"{"name":"a","kind":"http","url":"ftp://x"}"#, "must start with http:// or https://"),
            (r#"{"name":"a","kind":"http","url":"https://x","ca_file":""}"#, "sinks[0].ca_file"),
            (r#"{"name":"a","kind":"nats","url":"nats://x","subject":"s","ca_file":"/ca.pem"}"#, "only a http sink takes `ca_file`"),
            (r#"{"name":"a","kind":"http","url":"http://x","subject":"s"}"#, "only a nats sink takes `subject`"),
            (r#"{"name":"a","kind":"nats","url":"nats://x"}"#, "needs `subject`"),
            (r#"{"name":"a","kind":"nats","url":"nats://x","subject":"a.>"}"#, "wildcards"),
            (r#"{"name":"a","kind":"nats","subject":"s"}"#, "needs `url` or `url_env`"),
            (r#"{"name":"a","kind":"http","url":"http://x","from":"window:nope"}"#, "no window \"nope\""),
            (r#"{"name":"A","kind":"http","url":"http://x"}"#, "sinks[0].name"),
            (r#"{"name":"a","kind":"http","url":"http://x","batch_max":0}"#, "batch_max"),
        ];
        for (json, want) in cases {
            let err = parse(json).validate("sinks[0]", &[]).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
        let tls = parse(r#"{"name":"a","kind":"http","url":"https://hooks.example/in","ca_file":"/etc/sluice/ca.pem"}"#);
        assert_eq!(tls.validate("sinks[0]", &[]), Ok(()));
        let window = parse(r#"{"name":"a","kind":"postgres","url":"postgres://h/db","table":"t","from":"window:w"}"#);
        assert_eq!(window.validate("sinks[0]", &["w"]), Ok(()));
        assert_eq!(window.source(), SinkSource::Window("w".into()));
    }

    #[test]
    fn names_missing_environment_variables() {
        let spec = parse(r#"{"name":"a","kind":"http","url_env":"SLUICE_TEST_SURELY_UNSET_1","headers_env":{"Authorization":"SLUICE_TEST_SURELY_UNSET_2"}}"#);
        assert_eq!(spec.missing_env(), ["SLUICE_TEST_SURELY_UNSET_1", "SLUICE_TEST_SURELY_UNSET_2"]);
        assert!(spec.resolve_url().unwrap_err().contains("SLUICE_TEST_SURELY_UNSET_1"));
    }
}
