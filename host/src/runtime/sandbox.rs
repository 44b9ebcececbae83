//! The per-instance store state: a WASI context that grants nothing, the
//! memory limiter, captured guest stdout/stderr, and the bookkeeping of the
//! call in progress (which event, its fuel, what it emitted).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::guest_log::LogBudget;
use super::imports::EPOCH_TICK_MS;
use super::limits::StageLimits;
use super::tables::LookupTables;
use crate::domain::Event;

/// Who a guest's log lines and failures are attributed to.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    pub pipeline: String,
    pub stage: String,
    pub plugin: String,
    pub plugin_version: u32,
}

/// Bytes of guest stdout/stderr kept per call; the rest is counted, not kept.
const GUEST_OUTPUT_CAP: usize = 16 * 1024;

/// Captures a guest's stdout or stderr, up to a cap, without ever blocking or
/// failing the guest's writes.
#[derive(Clone, Default)]
pub(crate) struct GuestOutput {
    inner: Arc<Mutex<CapturedBytes>>,
}

#[derive(Default)]
struct CapturedBytes {
    kept: Vec<u8>,
    dropped: usize,
}

impl GuestOutput {
    fn append(&self, bytes: &[u8]) {
        let mut inner = self.inner.lock();
        let room = GUEST_OUTPUT_CAP.saturating_sub(inner.kept.len());
        let take = room.min(bytes.len());
        inner.kept.extend_from_slice(&bytes[..take]);
        inner.dropped += bytes.len() - take;
    }

    /// Takes what was captured since the last call: (text, bytes dropped).
    pub(crate) fn take(&self) -> (String, usize) {
        let mut inner = self.inner.lock();
        let text = String::from_utf8_lossy(&inner.kept).into_owned();
        let dropped = inner.dropped;
        inner.kept.clear();
        inner.dropped = 0;
        (text, dropped)
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A clock stopped at the epoch: stages get no time source.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Denies memory growth past the stage's cap and remembers that it did, so
/// the trap that follows is classified as `memory`.
pub(crate) struct MemoryCap {
    pub(crate) max_bytes: usize,
    pub(crate) denied: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Why the host itself stopped a call (as opposed to a wasm trap).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HostStop {
    /// An input produced more outputs or bytes than allowed.
    OutputLimit(String),
    /// The guest broke the calling convention (e.g. a bad `begin` index).
    Contract(String),
    /// The deadline passed while the guest waited in this blocking WASI call.
    Timeout(&'static str),
}

impl std::fmt::Display for HostStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostStop::OutputLimit(m) | HostStop::Contract(m) => f.write_str(m),
            HostStop::Timeout(call) => write!(f, "the deadline passed while waiting in {call}"),
        }
    }
}

impl std::error::Error for HostStop {}

/// One output of a call, as the guest handed it over.
pub(crate) enum Emitted {
    /// A whole event (`emit`).
    Event(Event),
    /// The input with this data (`emit-data`); made whole after the call.
    Data(String),
}

/// Bookkeeping of the `process` call in progress.
#[derive(Default)]
pub(crate) struct CallState {
    /// Number of events in the batch.
    pub(crate) batch_len: u32,
    /// The event the guest announced with `begin`.
    pub(crate) current: Option<u32>,
    /// Fuel burned per event of the batch.
    pub(crate) fuel_used: Vec<u64>,
    /// Outputs handed to `emit` or `emit-data`, with the index of their input.
    pub(crate) emitted: Vec<(u32, Emitted)>,
    /// Per input: the bytes of its id, kind and source plus 8 (what an
    /// `emit-data` output adds to its data in [`Event::byte_size`]).
    pub(crate) head_bytes: Vec<u32>,
    pub(crate) current_outputs: u32,
    pub(crate) current_output_bytes: usize,
    /// Bytes of outputs of the whole call so far, and how many it may have
    /// (what is left of the batch's `MAX_BATCH_OUTPUT_BYTES`).
    pub(crate) call_output_bytes: usize,
    pub(crate) call_output_budget: usize,
    /// What the guest logged with `host.log` (capped per call).
    pub(crate) log: LogBudget,
    /// An uncaught exception the guest reported for the current event (see
    /// [`super::imports::UNCAUGHT_PREFIX`]): what a trap right after it is
    /// reported as (`panic`).
    pub(crate) uncaught: Option<String>,
}

/// Everything a stage instance's store holds.
pub struct StoreState {
    wasi: WasiCtx,
    resources: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) call: CallState,
    pub(crate) limits: StageLimits,
    pub(crate) tables: Arc<dyn LookupTables>,
    pub(crate) who: Arc<Attribution>,
    pub(crate) stdout: GuestOutput,
    pub(crate) stderr: GuestOutput,
    /// What the guest wrote to stderr during the last call (panic messages live here).
    pub(crate) last_stderr: String,
    /// When the event (or `init`) in progress runs out of time, in ms of
    /// the [`coarse_ms`] clock: the epoch deadline for the blocking WASI
    /// calls that epoch interruption cannot stop (see `super::waits`).
    pub(crate) deadline_ms: u64,
}

/// Milliseconds since [`clock_start`] as of the last epoch tick: armed per
/// event without asking the OS for the time (the ticker updates it every
/// millisecond; it lags the real clock by at most a tick or two).
static COARSE_MS: AtomicU64 = AtomicU64::new(0);

/// The instant the coarse clock counts from.
pub(crate) fn clock_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Called by the epoch ticker on every tick.
pub(crate) fn tick_coarse_clock() {
    COARSE_MS.store(clock_start().elapsed().as_millis() as u64, Ordering::Relaxed);
}

/// The coarse clock's reading (see [`COARSE_MS`]).
pub(crate) fn coarse_ms() -> u64 {
    COARSE_MS.load(Ordering::Relaxed)
}

impl StoreState {
    pub(crate) fn new(limits: StageLimits, tables: Arc<dyn LookupTables>, who: Arc<Attribution>) -> Self {
        let stdout = GuestOutput::default();
        let stderr = GuestOutput::default();
        let mut wasi = WasiCtxBuilder::new();
        // No args, env, preopened dirs, sockets, name lookup, clock or entropy.
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a; 32]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5; 32]))
            .insecure_random_seed(0);
        StoreState {
            wasi: wasi.build(),
            resources: ResourceTable::new(),
            memory: MemoryCap { max_bytes: limits.memory_bytes(), denied: false },
            call: CallState::default(),
            limits,
            tables,
            who,
            stdout,
            stderr,
            last_stderr: String::new(),
            deadline_ms: coarse_ms(),
        }
    }
}

impl StoreState {
    /// The WASI resources (pollables, streams) of this instance.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.resources
    }

    /// Starts a new time budget of `timeout_ms`: sets the store's epoch
    /// deadline and the matching [`StoreState::deadline_ms`].
    pub(crate) fn arm_deadline(store: &mut StoreContextMut<'_, StoreState>, timeout_ms: u64) {
        store.set_epoch_deadline(timeout_ms.div_ceil(EPOCH_TICK_MS) + 1);
        store.data_mut().deadline_ms = coarse_ms() + timeout_ms;
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.resources }
    }
}
