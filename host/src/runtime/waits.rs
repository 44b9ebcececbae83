//! WASI's blocking calls, held to the event's deadline.
//!
//! WASI is linked in its blocking flavour, and epoch interruption only fires
//! while wasm code runs: a stage parked in `wasi:io/poll.poll` or
//! `pollable.block` (which is what `std::thread::sleep` becomes) would hold
//! its worker thread for as long as it asked. So those two functions are
//! shadowed here by versions that wait at most until the event's deadline
//! ([`StoreState::deadline_ms`]) and then stop the call with
//! [`HostStop::Timeout`], which fails the event with `timeout`.
//!
//! The other blocking calls cannot wait: the only input stream a stage has
//! is a closed stdin (reads answer "closed" at once), its stdout and stderr
//! are always ready, and it can open no file or socket.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::bindings::io::poll::{Host, HostPollable};
use wasmtime_wasi::p2::DynPollable;

use super::sandbox::{clock_start, HostStop, StoreState};

/// The `wasi:io/poll` instance as `wasmtime_wasi` defines it (the linker
/// matches a plugin's older 0.2 minor versions to it).
const POLL_INTERFACE: &str = "wasi:io/poll@0.2.12";

/// Replaces `poll` and `[method]pollable.block` of [`POLL_INTERFACE`] (the
/// WASI ones must be in `linker` already).
pub(crate) fn shadow_blocking(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL_INTERFACE)?;
    poll.func_wrap("poll", |mut cx: StoreContextMut<'_, StoreState>, (pollables,): (Vec<Resource<DynPollable>>,)| {
        let state = cx.data_mut();
        let deadline = clock_start() + Duration::from_millis(state.deadline_ms);
        let ready = until_deadline(deadline, "wasi:io/poll.poll", Host::poll(state.table(), pollables))?;
        Ok((ready,))
    })?;
    poll.func_wrap("[method]pollable.block", |mut cx: StoreContextMut<'_, StoreState>, (pollable,): (Resource<DynPollable>,)| {
        let state = cx.data_mut();
        let deadline = clock_start() + Duration::from_millis(state.deadline_ms);
        until_deadline(deadline, "wasi:io/poll.pollable.block", HostPollable::block(state.table(), pollable))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs a WASI wait until it ends or `deadline` passes, whichever is first.
fn until_deadline<R>(
    deadline: Instant,
    call: &'static str,
    wait: impl std::future::Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    let left = deadline.saturating_duration_since(Instant::now());
    match wasmtime_wasi::runtime::in_tokio(async { tokio::time::timeout(left, wait).await }) {
        Ok(answer) => answer,
        Err(_elapsed) => Err(wasmtime::Error::new(HostStop::Timeout(call))),
    }
}
