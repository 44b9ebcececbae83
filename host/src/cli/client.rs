//! The HTTP client every server-facing command shares (`catalog`, `send`,
//! `apply`, `plugin push`, `tail`, `dlq`, `top`): where the server is, the
//! bearer token, and turning a non-2xx answer into an error that names the
//! server's message, so each command only says what it asks for.

use std::time::Duration;

use anyhow::{bail, Context as _};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::Value;

/// Where the server is and how to authenticate: global flags, so they can
/// be given before or after the command, or through the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, global = true, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:7878")]
    pub server: String,
    /// An admin token (when the server has tokens).
    #[arg(long, global = true, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print machine-readable JSON instead of the human-readable text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The admin API of one server.
pub struct Api {
    pub client: Client,
    pub base: String,
    token: Option<String>,
}

impl Api {
    /// A client for `args.server`; `timeout` bounds every request (uploads
    /// compile the plugin before they answer, so those need minutes).
    pub fn new(args: &ServerArgs, timeout: Duration) -> anyhow::Result<Api> {
        let client = Client::builder().timeout(timeout).build().context("making the HTTP client")?;
        Ok(Api { client, base: args.server.trim_end_matches('/').to_string(), token: args.token.clone() })
    }

    /// The full URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path`, with the token if there is one.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends; only a failure to reach the server is an error.
    pub fn send(&self, what: &str, request: RequestBuilder) -> anyhow::Result<Response> {
        request.send().with_context(|| format!("{what}: cannot reach the server at {}", self.base))
    }

    /// Sends and insists on a 2xx answer (the error names the server's message).
    pub fn ok(&self, what: &str, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = self.send(what, request)?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().unwrap_or_default();
            bail!("{what}: the server answered {status}: {}{}", body.trim(), auth_hint(status.as_u16()));
        }
        Ok(response)
    }

    /// GET `path` as JSON.
    pub fn json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> anyhow::Result<T> {
        let what = format!("GET {path}");
        self.ok(&what, self.request(reqwest::Method::GET, path))?.json().with_context(|| format!("{what}: unexpected answer"))
    }

    /// GET `path` as JSON, `None` on 404.
    pub fn json_opt(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let what = format!("GET {path}");
        let response = self.send(&what, self.request(reqwest::Method::GET, path))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            let status = response.status();
            bail!("{what}: the server answered {status}: {}{}", response.text().unwrap_or_default().trim(), auth_hint(status.as_u16()));
        }
        Ok(Some(response.json().with_context(|| format!("{what}: unexpected answer"))?))
    }

    /// GET `path` as bytes.
    pub fn bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let what = format!("GET {path}");
        Ok(self.ok(&what, self.request(reqwest::Method::GET, path))?.bytes().with_context(|| what.clone())?.to_vec())
    }

    /// `method` `path` with a body of `content_type`; the JSON answer
    /// (`null` for an empty one, e.g. a 204).
    pub fn call(&self, method: reqwest::Method, path: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let what = format!("{method} {path}");
        let request = self.request(method, path).header("content-type", content_type).body(body);
        let bytes = self.ok(&what, request)?.bytes().with_context(|| what.clone())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{what}: unexpected answer"))
    }

    /// PUT `path`.
    pub fn put(&self, path: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, content_type, body)
    }

    /// Every entry of a paged list (`entries` + `next_cursor`), following
    /// cursors until an empty page; at most `max` entries.
    pub fn page_all(&self, path: &str, max: usize) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        while all.len() < max {
            let page: Value = self.json(&format!("{path}?limit=1000&cursor={}", encode(&cursor)))?;
            let entries = page.get("entries").and_then(Value::as_array).with_context(|| format!("GET {path}: the answer has no entries"))?;
            if entries.is_empty() {
                break;
            }
            all.extend(entries.iter().cloned());
            cursor = page.get("next_cursor").and_then(Value::as_str).with_context(|| format!("GET {path}: the answer has no next_cursor"))?.to_string();
        }
        all.truncate(max);
        Ok(all)
    }
}

/// What to do about a refused token, appended to the error of a 401 or a
/// 403 (the server's own message says what was refused, not where the
/// client's token comes from).
pub fn auth_hint(status: u16) -> &'static str {
    match status {
        401 => " (the server has tokens: give a valid one with --token or SLUICE_TOKEN)",
        403 => " (this token's role may not do this: an ingest token only sends events; use an admin token)",
        _ => "",
    }
}

/// `text` escaped for a query string.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prints `value` as pretty JSON on stdout (the `--json` output).
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value).context("printing JSON")?);
    Ok(())
}
