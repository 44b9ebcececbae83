//! `escape` (hostile, for sandbox tests): tries to break out of the sandbox.
//! For each event it reads a file with `std::fs::read_to_string(path)` and
//! opens a TCP connection with `std::net::TcpStream::connect(addr)`, then
//! records what happened and passes the event on: `data.file` is
//! `"ok:<first 64 bytes>"` or `"error:<io error>"`, `data.socket` is `"ok"`
//! or `"error:<io error>"`. In a correct sandbox both are errors.
//!
//! Config: `{"path": "/etc/passwd", "addr": "127.0.0.1:6379"}`, both
//! optional (those are the defaults).

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct Escape {
    path: String,
    addr: String,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    path: String,
    addr: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { path: "/etc/passwd".into(), addr: "127.0.0.1:6379".into() }
    }
}

/// At most the first 64 bytes of `text`, cut back to a character boundary.
fn head(text: &str) -> &str {
    &text[..text.floor_char_boundary(64)]
}

impl Stage for Escape {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        Ok(Escape { path: config.path, addr: config.addr })
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        let file = match std::fs::read_to_string(&self.path) {
            Ok(text) => format!("ok:{}", head(&text)),
            Err(e) => format!("error:{e}"),
        };
        let socket = match std::net::TcpStream::connect(self.addr.as_str()) {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("error:{e}"),
        };
        event.set("data.file", file);
        event.set("data.socket", socket);
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(Escape);

#[cfg(test)]
mod tests {
    use super::head;

    #[test]
    fn head_cuts_at_a_char_boundary() {
        assert_eq!(head("short"), "short");
        assert_eq!(head(&"a".repeat(100)).len(), 64);
        let text = format!("{}é", "a".repeat(63));
        assert_eq!(head(&text), "a".repeat(63));
    }
}
