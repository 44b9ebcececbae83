//! `url-parts`: from `data.url` adds `data.host`, `data.path` and
//! `data.query` (an object of the query parameters, percent-decoded). An
//! unparsable URL is a non-retryable error that names the value. Events
//! without `data.url` pass unchanged. No config.
//!
//! This runs for every event of a pipeline, so it works on bytes: the URL is
//! read borrowed from the event, split with byte scans (no `str` pattern
//! machinery, which is costly in WebAssembly), and the three fields are
//! written as JSON text straight into the event ([`RawJson`]), without
//! building `serde_json` values or a map for the query.

use std::borrow::Cow;

use serde::Deserialize;
use sluice_sdk::scan::{find_any, find_byte};
use sluice_sdk::{Context, Emit, Event, RawJson, Stage, StageError};

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
///
/// The scheme is everything before the first `://` (a letter, then letters,
/// digits, `+`, `-` or `.`); the fragment is dropped; the authority runs to
/// the first `/` or `?`; userinfo (up to the last `@`) and the port are left
/// out of the host; an IPv6 host keeps its brackets. The host must not be
/// empty or hold whitespace or any of `<>"{}|\^` and backtick, and a port,
/// if given, must be a number that fits 16 bits.
pub fn split_url(url: &str) -> Option<Parts<'_>> {
    let bytes = url.as_bytes();
    let scheme_end = find_scheme_separator(bytes)?;
    let scheme = &bytes[..scheme_end];
    if !scheme.first().is_some_and(u8::is_ascii_alphabetic)
        || !scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    // The authority: from after `://` to the first `/`, `?` or `#`, with
    // userinfo ending at its last `@`.
    let start = scheme_end + 3;
    let authority_end = find_any(&bytes[start..], b"/?#").map_or(bytes.len(), |at| start + at);
    let mut host_start = start;
    while let Some(at) = find_byte(&bytes[host_start..authority_end], b'@') {
        host_start += at + 1;
    }
    let host_port = &url[host_start..authority_end];
    let host = if host_port.starts_with('[') {
        &host_port[..find_byte(host_port.as_bytes(), b']')? + 1]
    } else {
        &host_port[..find_byte(host_port.as_bytes(), b':').unwrap_or(host_port.len())]
    };
    if host.is_empty() || !host_chars_ok(host) {
        return None;
    }
    if let Some(port) = host_port[host.len()..].strip_prefix(':') {
        if !port.is_empty() && port.parse::<u16>().is_err() {
            return None;
        }
    }
    // Path and query: up to the fragment, split at the first `?`.
    let tail_end = find_byte(&bytes[authority_end..], b'#').map_or(bytes.len(), |at| authority_end + at);
    let tail = &url[authority_end..tail_end];
    let (path, query) = match find_byte(tail.as_bytes(), b'?') {
        Some(at) => (&tail[..at], Some(&tail[at + 1..])),
        None => (tail, None),
    };
    Some(Parts { host, path: if path.is_empty() { "/" } else { path }, query })
}

/// The index of the first `://` in `bytes`.
fn find_scheme_separator(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(colon) = find_byte(&bytes[from..], b':') {
        let at = from + colon;
        if bytes[at + 1..].starts_with(b"//") {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether every character of a host is allowed: no whitespace and none of
/// the characters URLs never hold unescaped. Hosts are ASCII in practice
/// (checked from a table); others character by character (Unicode
/// whitespace too).
fn host_chars_ok(host: &str) -> bool {
    let forbidden = |c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`');
    /// For each byte: 0 allowed, 1 forbidden, 2 not ASCII.
    const CLASS: [u8; 256] = {
        let mut class = [0u8; 256];
        let mut byte = 0;
        while byte < 256 {
            // ASCII whitespace as `char::is_whitespace` has it (with \x0b).
            let forbidden = matches!(byte as u8, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
                || matches!(byte as u8, b'<' | b'>' | b'"' | b'{' | b'}' | b'|' | b'\\' | b'^' | b'`');
            class[byte] = if byte >= 0x80 { 2 } else { forbidden as u8 };
            byte += 1;
        }
        class
    };
    let mut ascii = true;
    for &byte in host.as_bytes() {
        match CLASS[usize::from(byte)] {
            0 => {}
            1 => return false,
            _ => ascii = false,
        }
    }
    ascii || !host.chars().any(forbidden)
}

/// Decodes `%XX` escapes and `+` (as a space) in one query component.
/// (A `%` without two hex digits after it stays as it is; bytes that do not
/// decode to UTF-8 become U+FFFD.)
pub fn percent_decode(text: &str) -> String {
    if find_byte(text.as_bytes(), b'%').is_none() {
        // Only `+` to replace: the text stays valid UTF-8, no check needed.
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(plus) = find_byte(rest.as_bytes(), b'+') {
            out.push_str(&rest[..plus]);
            out.push(' ');
            rest = &rest[plus + 1..];
        }
        out.push_str(rest);
        return out;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut from = 0;
    // Copy the runs between `%` and `+` whole.
    while let Some(run) = find_any(&bytes[from..], b"%+") {
        let at = from + run;
        out.extend_from_slice(&bytes[from..at]);
        from = at + 1;
        if bytes[at] == b'+' {
            out.push(b' ');
        } else if let (Some(hi), Some(lo)) = (bytes.get(at + 1).and_then(|&d| hex(d)), bytes.get(at + 2).and_then(|&d| hex(d))) {
            out.push(hi << 4 | lo);
            from = at + 3;
        } else {
            out.push(b'%');
        }
    }
    out.extend_from_slice(&bytes[from..]);
    // Valid UTF-8 (the usual case) becomes the String as is, without the copy
    // `from_utf8_lossy(..).into_owned()` would make.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`percent_decode`], borrowing `text` when there is nothing to decode
/// (most query components).
fn decode(text: &str) -> Cow<'_, str> {
    if find_any(text.as_bytes(), b"%+").is_some() {
        Cow::Owned(percent_decode(text))
    } else {
        Cow::Borrowed(text)
    }
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The query parameters as a JSON object of strings, with a map's semantics
/// (so the output is what a `serde_json::Map` would hold): keys in sorted
/// order, and the last value of a repeated key.
pub fn query_object(query: &str) -> RawJson {
    // Most queries have nothing to decode: then every part is borrowed
    // without looking at each.
    let encoded = find_any(query.as_bytes(), b"%+").is_some();
    let part = |text| if encoded { decode(text) } else { Cow::Borrowed(text) };
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    let mut rest = query;
    while !rest.is_empty() {
        let end = find_byte(rest.as_bytes(), b'&').unwrap_or(rest.len());
        let pair = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        if pair.is_empty() {
            continue;
        }
        pairs.push(match find_byte(pair.as_bytes(), b'=') {
            Some(at) => (part(&pair[..at]), part(&pair[at + 1..])),
            None => (part(pair), Cow::Borrowed("")),
        });
    }
    // Stable, so a repeated key's values stay in order: the last one wins.
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let last_of_each = pairs.iter().enumerate().filter(|(i, (key, _))| pairs.get(i + 1).is_none_or(|next| next.0 != *key));
    RawJson::string_object(last_of_each.map(|(_, (key, value))| (key, value)))
}

impl Stage for UrlParts {
    type Config = Config;

    fn init(_config: Config) -> Result<Self, String> {
        Ok(UrlParts)
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        // Everything is written from the borrowed URL, before the event is
        // changed.
        let fields = {
            let Some(url) = event.get_str("data.url") else { return Ok(Emit::Pass) };
            let parts = split_url(&url).ok_or_else(|| StageError::rejected(format!("data.url is not a valid absolute URL: {url:?}")))?;
            let host = if parts.host.bytes().any(|b| b.is_ascii_uppercase()) {
                RawJson::string(&parts.host.to_ascii_lowercase())
            } else {
                RawJson::string(parts.host)
            };
            [("host", host), ("path", RawJson::string(parts.path)), ("query", query_object(parts.query.unwrap_or("")))]
        };
        event.set_fields(fields);
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(UrlParts);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{Map, Value};

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

    #[test]
    fn host_table_agrees_with_the_char_test() {
        let forbidden = |c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`');
        for c in (0u8..0x80).map(char::from).chain(['é', '\u{85}', '\u{a0}', '\u{3000}']) {
            assert_eq!(host_chars_ok(&format!("a{c}b")), !forbidden(c), "{c:?}");
        }
    }

    /// The first implementation, with `str` patterns: the byte-level one
    /// must answer the same for any input.
    fn reference_split_url(url: &str) -> Option<Parts<'_>> {
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

    /// The first implementation of the query object, through a map.
    fn reference_query(query: &str) -> String {
        let mut map = Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(reference_percent_decode(k), Value::String(reference_percent_decode(v)));
        }
        Value::Object(map).to_string()
    }

    /// The first implementation of `percent_decode`, byte by byte.
    fn reference_percent_decode(text: &str) -> String {
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
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn answers_as_the_first_implementation() {
        let pieces = [
            "http", "https", "h+t-t.p", "1http", "ht_tp", "", ":", "://", ":/", "/", "//", "?", "#", "@", "[", "]", "[::1]", ":8080", ":99999",
            ":+80", ":", "a", "B", "é", "\u{a0}", "\u{3000}", " ", "\t", "<", "|", "%", "%41", "%zz", "%C3%A9", "+", "=", "&", "&&", "x=1",
            "x=2", "k", "user:pw@", "shop.Example.COM", "/p/a%20th", "?q=a+b",
        ];
        // Deterministic pseudo-random concatenations of the pieces.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: usize| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let (mut urls, mut queries) = (0, 0);
        for _ in 0..200_000 {
            let mut url = String::new();
            for _ in 0..1 + next(10) {
                url.push_str(pieces[next(pieces.len())]);
            }
            if next(2) == 0 {
                url = format!("{}://{url}", ["http", "https", "x"][next(3)]);
            }
            let (ours, reference) = (split_url(&url), reference_split_url(&url));
            assert_eq!(ours, reference, "{url:?}");
            assert_eq!(percent_decode(&url), reference_percent_decode(&url), "{url:?}");
            urls += usize::from(ours.is_some());
            if let Some(query) = ours.and_then(|p| p.query) {
                queries += 1;
                assert_eq!(query_object(query).as_str(), reference_query(query), "{url:?}");
            }
        }
        // The inputs exercise both outcomes.
        assert!(urls > 10_000 && queries > 5_000, "{urls} URLs, {queries} queries");
    }
}
