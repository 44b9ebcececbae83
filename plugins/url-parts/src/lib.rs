//! `url-parts`: from `data.url` adds `data.host`, `data.path` and
//! `data.query` (an object of the query parameters, percent-decoded). An
//! unparsable URL is a non-retryable error that names the value. Events
//! without `data.url` pass unchanged. No config.

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Map, Stage, StageError, Value};

pub struct UrlParts;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The parts of an absolute `scheme://host[:port]/path?query#fragment` URL.
#[derive(Debug, PartialEq)]
pub struct Parts<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Splits an absolute http(s)-style URL; `None` when it is not one.
pub fn split_url(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let rest = rest.split('#').next().unwrap_or("");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => &host_port[..v6.find(']')? + 2],
        None => host_port.split(':').next().unwrap_or(""),
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')) {
        return None;
    }
    if let Some(port) = host_port.get(host.len()..).and_then(|p| p.strip_prefix(':')) {
        if !port.is_empty() && port.parse::<u16>().is_err() {
            return None;
        }
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    Some(Parts { host, path: if path.is_empty() { "/" } else { path }, query })
}

/// Decodes `%XX` escapes and `+` (as a space) in one query component.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    // Valid UTF-8 (the usual case) becomes the String as is, without the copy
    // `from_utf8_lossy(..).into_owned()` would make.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

impl Stage for UrlParts {
    type Config = Config;

    fn init(_config: Config) -> Result<Self, String> {
        Ok(UrlParts)
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let Some(url) = event.get_str("data.url") else { return Ok(Emit::Pass) };
        let url = url.into_owned();
        let parts = split_url(&url).ok_or_else(|| StageError::rejected(format!("data.url is not a valid absolute URL: {url:?}")))?;
        let mut query = Map::new();
        for pair in parts.query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            query.insert(percent_decode(k), Value::String(percent_decode(v)));
        }
        let fields = [
            ("host", Value::String(parts.host.to_ascii_lowercase())),
            ("path", Value::String(parts.path.to_string())),
            ("query", Value::Object(query)),
        ];
        event.set_fields(fields);
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(UrlParts);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let p = split_url("https://User@Shop.Example.com:8443/a/b?x=1&y=%20z#frag").unwrap();
        assert_eq!(p, Parts { host: "Shop.Example.com", path: "/a/b", query: Some("x=1&y=%20z") });
        assert_eq!(split_url("http://h").unwrap().path, "/");
        assert!(split_url("not a url").is_none());
        assert!(split_url("http://").is_none());
        assert!(split_url("http://h:99999/").is_none());
        assert_eq!(percent_decode("a%20b+c%zz"), "a b c%zz");
        assert_eq!(percent_decode("%C3%A9%ff"), "é\u{FFFD}");
        assert!(split_url("git+ssh.x-y://h/").is_some());
        assert!(split_url("ht_tp://h/").is_none());
        for bad in ["http://a b/", "http://a<b/", "http://a>b/", "http://a\"b/", "http://a{b/", "http://a}b/", "http://a|b/", "http://a\\b/", "http://a^b/", "http://a`b/"] {
            assert!(split_url(bad).is_none(), "{bad}");
        }
    }
}
