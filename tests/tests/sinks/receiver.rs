//! An HTTP endpoint written for the tests: takes POSTs of NDJSON on
//! 127.0.0.1 (plain, or over TLS with a certificate the test made), keeps
//! every line (event id) and `Idempotency-Key` it was given, and answers as
//! told: 200, a status (503, 400, …), or stalls (holds requests unanswered
//! until released, at most 30 s).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// 200 and keep the lines.
    Accept,
    /// This status (the lines are not kept).
    Answer(u16),
    /// Hold the request unanswered until the mode changes.
    Stall,
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    /// Lines kept, in arrival order.
    lines: Vec<Value>,
    /// Every `Idempotency-Key` with the batch sizes seen under it.
    keys: HashMap<String, Vec<usize>>,
    /// Requests seen (any answer).
    requests: usize,
    /// Every other header of the last request (lower-case name → value).
    headers: HashMap<String, String>,
}

/// The receiver; its thread lives as long as the test process.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<(Mutex<State>, Condvar)>,
    /// Where to POST.
    pub url: String,
}

impl Receiver {
    /// Starts listening on a free port, answering `mode`.
    pub fn start(mode: Mode) -> Receiver {
        Receiver::listen(mode, None)
    }

    /// The same over TLS (`https://`), with the certificate of `tls`.
    pub fn start_tls(mode: Mode, tls: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::listen(mode, Some(tls))
    }

    fn listen(mode: Mode, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/in", listener.local_addr().unwrap());
        let state = Arc::new((Mutex::new(State { mode: Some(mode), ..Default::default() }), Condvar::new()));
        let receiver = Receiver { state, url };
        let serving = receiver.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (serving, tls) = (serving.clone(), tls.clone());
                stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
                std::thread::spawn(move || match tls {
                    None => serving.serve(stream),
                    // A client that refuses the certificate ends the handshake: the first read fails and `serve` returns.
                    Some(config) => match rustls::ServerConnection::new(config) {
                        Ok(connection) => serving.serve(rustls::StreamOwned::new(connection, stream)),
                        Err(e) => eprintln!("receiver: no TLS connection: {e}"),
                    },
                });
            }
        });
        receiver
    }

    /// Answers `mode` from now on (wakes stalled requests).
    pub fn set(&self, mode: Mode) {
        let (lock, wake) = &*self.state;
        lock.lock().unwrap().mode = Some(mode);
        wake.notify_all();
    }

    /// The `id` of every line kept so far (repeats included).
    pub fn ids(&self) -> Vec<String> {
        self.state.0.lock().unwrap().lines.iter().map(|l| l["id"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// Idempotency keys seen, with the batch size of each request under it.
    pub fn keys(&self) -> HashMap<String, Vec<usize>> {
        self.state.0.lock().unwrap().keys.clone()
    }

    /// Requests answered or held so far.
    pub fn requests(&self) -> usize {
        self.state.0.lock().unwrap().requests
    }

    /// The value of header `name` (lower case) in the last request.
    pub fn header(&self, name: &str) -> Option<String> {
        self.state.0.lock().unwrap().headers.get(name).cloned()
    }

    fn serve(&self, stream: impl Read + Write) {
        let mut reader = BufReader::new(stream);
        // Keep-alive: one request after another on the connection.
        for _ in 0..100_000 {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let (mut length, mut key, mut headers) = (0usize, None, HashMap::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "idempotency-key" => key = Some(value.trim().to_string()),
                        other => {
                            headers.insert(other.to_string(), value.trim().to_string());
                        }
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let lines: Vec<Value> = String::from_utf8_lossy(&body).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            self.state.0.lock().unwrap().headers = headers;
            let status = self.answer(lines, key);
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
            if reader.get_mut().write_all(reply.as_bytes()).and_then(|()| reader.get_mut().flush()).is_err() {
                return;
            }
        }
    }

    /// Decides the answer (waiting while stalled) and keeps the lines on 200.
    fn answer(&self, lines: Vec<Value>, key: Option<String>) -> u16 {
        let (lock, wake) = &*self.state;
        let mut state = lock.lock().unwrap();
        state.requests += 1;
        state.keys.entry(key.unwrap_or_default()).or_default().push(lines.len());
        let deadline = Instant::now() + Duration::from_secs(30);
        while state.mode == Some(Mode::Stall) && Instant::now() < deadline {
            state = wake.wait_timeout(state, Duration::from_millis(100)).unwrap().0;
        }
        match state.mode {
            Some(Mode::Answer(status)) => status,
            _ => {
                state.lines.extend(lines);
                200
            }
        }
    }
}
