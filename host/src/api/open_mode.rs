//! Open mode (no tokens configured) is for a developer's own machine; these
//! checks keep a web page in that developer's browser out of it
//! (API.md v1.1, "Open mode"):
//! - a `Host` that is not a loopback name or address is refused
//!   (`forbidden_host`): DNS rebinding points a site's name at 127.0.0.1;
//! - a request other than GET/HEAD whose `Origin` is not the server's own
//!   is refused (`cross_origin`): a cross-site `fetch(…, {mode: "no-cors"})`
//!   can POST without a preflight.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The layer, installed only when the server runs open.
pub async fn guard(request: Request, next: Next) -> Response {
    match check(request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Whether a request may reach an open server.
fn check(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !is_loopback_host(host) {
        return Err(ApiError::ForbiddenHost(format!(
            "this server runs without tokens and answers only requests addressed to localhost, 127.0.0.1 or [::1], not {host:?}; \
             configure --admin-token to serve other names"
        )));
    }
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Err(ApiError::CrossOrigin(format!(
                "a {method} from origin {origin:?} is refused: this server runs without tokens and takes changes only from its own pages"
            )));
        }
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) => return addr == "::1",
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn only_loopback_hosts() {
        for ok in ["localhost", "localhost:7878", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:80", "127.1.2.3:9", "[::1]", "[::1]:7878"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["", "evil.example", "evil.example:7878", "localhost.evil.example", "10.0.0.1:80", "[::2]:1", "127.0.0.1:x", "[::1]x"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
        assert!(matches!(check(&Method::GET, &headers("rebind.example:7878", None)), Err(ApiError::ForbiddenHost(_))));
    }

    #[test]
    fn changes_only_from_the_own_origin() {
        assert!(check(&Method::POST, &headers("127.0.0.1:7878", None)).is_ok());
        assert!(check(&Method::POST, &headers("127.0.0.1:7878", Some("http://127.0.0.1:7878"))).is_ok());
        assert!(check(&Method::GET, &headers("127.0.0.1:7878", Some("https://site.example"))).is_ok());
        for origin in ["https://site.example", "null", "http://127.0.0.1:9999", "http://localhost:7878"] {
            assert!(matches!(check(&Method::POST, &headers("127.0.0.1:7878", Some(origin))), Err(ApiError::CrossOrigin(_))), "{origin}");
        }
        assert!(matches!(check(&Method::DELETE, &headers("localhost:1", Some("http://evil"))), Err(ApiError::CrossOrigin(_))));
    }
}
