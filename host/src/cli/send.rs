//! `sluice send PIPELINE FILE…`: events from files (or `-`, stdin) to a
//! pipeline's ingest route, in batches, without holding a file in memory.
//!
//! Each file may be one JSON object, a JSON array of objects, or NDJSON
//! (objects one after another, one a line). Each batch carries an
//! `Idempotency-Key` (one run id + the batch number), so a batch retried
//! after a 429, a 503 or a lost connection is queued at most once
//! (API.md, v1.1). Events rejected by the server are listed with the file
//! and line (or array index) they came from, and make the exit code 1.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal as _, Read};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde_json::{json, Value};

use super::client::{auth_hint, print_json, Api, ServerArgs};

/// `sluice send`.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// The pipeline to send to.
    pub pipeline: String,
    /// Files of events (a JSON object, a JSON array, or NDJSON); `-` is stdin.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Events per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Give up on a batch the server keeps refusing (429/503) or that cannot
    /// reach it after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub max_retry_time: Duration,
    /// How many rejected events to list.
    #[arg(long, default_value_t = 20)]
    pub show_errors: usize,
}

/// Where an event came from, for error messages.
#[derive(Clone, Debug)]
struct Origin {
    file: Arc<str>,
    /// The line (NDJSON, 1-based) or the array index (0-based).
    at: u64,
    in_array: bool,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.in_array {
            write!(f, "{}[{}]", self.file, self.at)
        } else {
            write!(f, "{}:{}", self.file, self.at)
        }
    }
}

/// One request's worth of events: NDJSON text and where each line came from.
struct Batch {
    number: u64,
    body: Vec<u8>,
    origins: Vec<Origin>,
}

/// What the whole run came to.
#[derive(Default)]
struct Tally {
    sent: u64,
    accepted: u64,
    rejected: u64,
    duplicates: u64,
    retries_429: u64,
    retries_503: u64,
    retries_connection: u64,
    requests: u64,
    /// The first rejections: where, and why.
    errors: Vec<(String, String)>,
}

/// Runs `sluice send`; the exit code is 1 when any event was rejected.
pub fn run(args: SendArgs, server: &ServerArgs) -> anyhow::Result<i32> {
    let api = Arc::new(Api::new(server, Duration::from_secs(120))?);
    let total_bytes: Option<u64> = args
        .files
        .iter()
        .map(|f| if f.as_os_str() == "-" { None } else { std::fs::metadata(f).ok().map(|m| m.len()) })
        .sum();
    let bar = progress_bar(total_bytes);
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let (tx, rx) = sync_channel::<Batch>(args.concurrency as usize);
    let rx = Arc::new(Mutex::new(rx));
    let mut senders = Vec::new();
    for _ in 0..args.concurrency {
        let (api, rx, tally, bar) = (api.clone(), rx.clone(), tally.clone(), bar.clone());
        let (pipeline, run_id, max_retry, show) = (args.pipeline.clone(), run_id.clone(), args.max_retry_time, args.show_errors);
        senders.push(std::thread::spawn(move || sender(&api, &pipeline, &run_id, &rx, &tally, &bar, max_retry, show, started)));
    }
    // Only the senders hold the receiver: if they all stop, reading stops.
    drop(rx);
    let read = read_all(&args, tx, &tally, &bar);
    let mut failure = read.err();
    for handle in senders {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or_else(|| Some(anyhow::anyhow!("a sending thread panicked"))),
        }
    }
    bar.finish_and_clear();
    let tally = tally.lock().map_err(|_| anyhow::anyhow!("a sending thread panicked"))?;
    report(&args, server.json, &tally, started.elapsed(), failure.as_ref())?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(if tally.rejected > 0 { 1 } else { 0 })
}

/// A bar over the input bytes with events/s in its message, drawn only
/// when stderr is a terminal (a spinner for stdin, whose size is unknown).
fn progress_bar(total_bytes: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total_bytes {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:30} {percent:>3}% {binary_bytes}/{binary_total_bytes} {msg} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {binary_bytes} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes batches off the channel and sends each until the server answers
/// it for good.
#[allow(clippy::too_many_arguments)]
fn sender(
    api: &Api,
    pipeline: &str,
    run_id: &str,
    rx: &Mutex<Receiver<Batch>>,
    tally: &Mutex<Tally>,
    bar: &ProgressBar,
    max_retry: Duration,
    show: usize,
    started: Instant,
) -> anyhow::Result<()> {
    loop {
        let batch = match rx.lock() {
            Ok(rx) => match rx.recv() {
                Ok(batch) => batch,
                Err(_) => return Ok(()),
            },
            Err(_) => bail!("another sending thread panicked"),
        };
        let answer = post(api, pipeline, run_id, &batch, tally, max_retry)?;
        let mut t = lock(tally);
        t.sent += batch.origins.len() as u64;
        t.requests += 1;
        t.accepted += answer.get("accepted").and_then(Value::as_u64).unwrap_or(0);
        t.rejected += answer.get("rejected").and_then(Value::as_u64).unwrap_or(0);
        t.duplicates += answer.get("duplicates").and_then(Value::as_u64).unwrap_or(0);
        for error in answer.get("errors").and_then(Value::as_array).into_iter().flatten() {
            if t.errors.len() >= show {
                break;
            }
            let index = error.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX) as usize;
            let at = batch.origins.get(index).map_or_else(|| format!("batch {} event {index}", batch.number), ToString::to_string);
            let why = error.get("error").and_then(Value::as_str).unwrap_or("rejected").to_string();
            t.errors.push((at, why));
        }
        let rate = t.sent as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!("{} events, {rate:.0} events/s", t.sent));
    }
}

/// One batch to the server, retried with the same idempotency key after a
/// 429 or 503 (waiting what `Retry-After` says) or a connection error,
/// until `max_retry` has passed.
fn post(api: &Api, pipeline: &str, run_id: &str, batch: &Batch, tally: &Mutex<Tally>, max_retry: Duration) -> anyhow::Result<Value> {
    let path = format!("/v1/pipelines/{pipeline}/events");
    let key = format!("{run_id}-{}", batch.number);
    let deadline = Instant::now() + max_retry;
    let mut backoff = Duration::from_millis(100);
    loop {
        let request = api
            .request(reqwest::Method::POST, &path)
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", &key)
            .body(batch.body.clone());
        let wait = match request.send() {
            Ok(response) => {
                let status = response.status().as_u16();
                if status == 429 || status == 503 {
                    let after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .map_or(Duration::from_secs(1), |s| Duration::from_secs_f64(s.clamp(0.05, 60.0)));
                    let mut t = lock(tally);
                    if status == 429 {
                        t.retries_429 += 1;
                    } else {
                        t.retries_503 += 1;
                    }
                    after
                } else {
                    let body = response.text().with_context(|| format!("POST {path}: reading the answer"))?;
                    if status == 202 || status == 200 {
                        return serde_json::from_str(&body).with_context(|| format!("POST {path}: unexpected answer {body}"));
                    }
                    let hint = if status == 413 { " (try a smaller --batch-size)" } else { auth_hint(status) };
                    bail!("batch {} (from {}): the server answered {status}: {}{hint}", batch.number, batch.origins[0], body.trim());
                }
            }
            Err(e) => {
                lock(tally).retries_connection += 1;
                if Instant::now() >= deadline {
                    return Err(e).with_context(|| format!("POST {path}: cannot reach the server at {}", api.base));
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        if Instant::now() + wait > deadline {
            bail!("batch {} (from {}): the server still refused it after {:?} (--max-retry-time)", batch.number, batch.origins[0], max_retry);
        }
        std::thread::sleep(wait);
    }
}

/// Builds batches from every file in turn and hands them to the senders.
fn read_all(args: &SendArgs, tx: SyncSender<Batch>, tally: &Mutex<Tally>, bar: &ProgressBar) -> anyhow::Result<()> {
    let mut batcher = Batcher { tx, size: args.batch_size as usize, next: 0, body: Vec::new(), origins: Vec::new() };
    for path in &args.files {
        let name: Arc<str> = if path.as_os_str() == "-" { "<stdin>".into() } else { path.display().to_string().into() };
        let input: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)
        };
        let mut reader = BufReader::with_capacity(1 << 20, Counting { inner: input, bar: bar.clone() });
        let first = first_byte(&mut reader).with_context(|| format!("reading {name}"))?;
        match first {
            None => {}
            Some(b'[') => {
                let mut de = serde_json::Deserializer::from_reader(reader);
                ArraySeed { batcher: &mut batcher, file: name.clone() }
                    .deserialize(&mut de)
                    .with_context(|| format!("{name}: not a JSON array of events"))?;
                de.end().with_context(|| format!("{name}: text after the JSON array"))?;
            }
            Some(_) => read_lines(&mut reader, &name, &mut batcher, tally)?,
        }
    }
    batcher.flush()
}

/// NDJSON (a single object is one line of it): each line is checked to be
/// JSON here, so one bad line is reported with its number instead of
/// failing its whole batch.
fn read_lines(reader: &mut impl BufRead, name: &Arc<str>, batcher: &mut Batcher, tally: &Mutex<Tally>) -> anyhow::Result<()> {
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut object = Vec::new();
    let mut object_start = 0;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).with_context(|| format!("reading {name}"))?;
        if n == 0 {
            break;
        }
        number += 1;
        let text = line.trim_ascii();
        if text.is_empty() && object.is_empty() {
            continue;
        }
        // A pretty-printed single object spans lines: gather them until
        // they parse.
        if object.is_empty() {
            object_start = number;
        }
        object.extend_from_slice(text);
        match serde_json::from_slice::<serde::de::IgnoredAny>(&object) {
            Ok(_) => {
                let origin = Origin { file: name.clone(), at: object_start, in_array: false };
                batcher.push(&object, origin)?;
                object.clear();
            }
            Err(e) if e.is_eof() => object.push(b' '),
            Err(e) => {
                let mut t = lock(tally);
                t.sent += 1;
                t.rejected += 1;
                if t.errors.len() < 1000 {
                    t.errors.push((format!("{name}:{object_start}"), format!("not JSON: {e}")));
                }
                object.clear();
            }
        }
    }
    if !object.is_empty() {
        let mut t = lock(tally);
        t.sent += 1;
        t.rejected += 1;
        t.errors.push((format!("{name}:{object_start}"), "not JSON: the input ends inside it".into()));
    }
    Ok(())
}

/// The first byte that is not whitespace, left unread.
fn first_byte(reader: &mut impl BufRead) -> std::io::Result<Option<u8>> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                reader.consume(i);
                return Ok(Some(b));
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// Moves the progress bar as input bytes are read.
struct Counting {
    inner: Box<dyn Read>,
    bar: ProgressBar,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Gathers events into batches of `size`.
struct Batcher {
    tx: SyncSender<Batch>,
    size: usize,
    next: u64,
    body: Vec<u8>,
    origins: Vec<Origin>,
}

impl Batcher {
    fn push(&mut self, event: &[u8], origin: Origin) -> anyhow::Result<()> {
        self.body.extend_from_slice(event);
        self.body.push(b'\n');
        self.origins.push(origin);
        if self.origins.len() >= self.size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.origins.is_empty() {
            return Ok(());
        }
        self.next += 1;
        let batch = Batch { number: self.next, body: std::mem::take(&mut self.body), origins: std::mem::take(&mut self.origins) };
        self.tx.send(batch).map_err(|_| anyhow::anyhow!("the sending threads stopped (see the error below)"))
    }
}

/// Streams the elements of a JSON array into the batcher one at a time.
struct ArraySeed<'a> {
    batcher: &'a mut Batcher,
    file: Arc<str>,
}

impl<'de> DeserializeSeed<'de> for ArraySeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0u64;
        while let Some(event) = seq.next_element::<Value>()? {
            let origin = Origin { file: self.file.clone(), at: index, in_array: true };
            let text = serde_json::to_vec(&event).map_err(serde::de::Error::custom)?;
            self.batcher.push(&text, origin).map_err(serde::de::Error::custom)?;
            index += 1;
        }
        Ok(())
    }
}

fn report(args: &SendArgs, as_json: bool, t: &Tally, took: Duration, failure: Option<&anyhow::Error>) -> anyhow::Result<()> {
    let rate = t.sent as f64 / took.as_secs_f64().max(0.001);
    if as_json {
        let errors: Vec<Value> = t.errors.iter().map(|(at, error)| json!({"at": at, "error": error})).collect();
        return print_json(&json!({
            "pipeline": args.pipeline, "sent": t.sent, "accepted": t.accepted, "rejected": t.rejected,
            "duplicates": t.duplicates, "requests": t.requests, "retries": {"429": t.retries_429, "503": t.retries_503,
            "connection": t.retries_connection}, "seconds": took.as_secs_f64(), "events_per_s": rate, "errors": errors,
            "failed": failure.map(|e| format!("{e:#}")),
        }));
    }
    println!(
        "sent {} events to {} in {:.1} s ({rate:.0} events/s): {} accepted, {} rejected, {} duplicates; {} requests, retried {} × 429, {} × 503, {} × connection",
        t.sent,
        args.pipeline,
        took.as_secs_f64(),
        t.accepted,
        t.rejected,
        t.duplicates,
        t.requests,
        t.retries_429,
        t.retries_503,
        t.retries_connection
    );
    if t.rejected > 0 {
        eprintln!("{} events were rejected; the first {}:", t.rejected, t.errors.len());
        for (at, why) in &t.errors {
            eprintln!("  {at}: {why}");
        }
    }
    Ok(())
}
