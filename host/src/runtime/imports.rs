//! The linker: everything a stage can import, and nothing more.
//!
//! WASI 0.2 is linked because Rust's std imports it, but with the context of
//! [`super::sandbox`] it grants nothing. The `sluice:stage/host` interface is
//! wired here by hand (not through `bindgen!`) because `begin` needs the
//! store itself to reset fuel and the deadline per event.

use wasmtime::component::{ComponentType, Lift, Linker, LinkerInstance};
use wasmtime::{Engine, StoreContextMut};

use super::report;
use super::sandbox::{Emitted, HostStop, StoreState};
use crate::domain::Event;

/// The WIT interface name the host implements, in the current revision of
/// the package (`wit/stage.wit`).
pub const HOST_INTERFACE: &str = "sluice:stage/host@0.2.0";
/// Every revision of the host interface the host grants, newest first: a
/// component built against `sluice:stage@0.1.0` (`wit/v0.1.0/stage.wit`)
/// imports the same functions under that name, and keeps loading. The
/// functions and their types are the same in both.
pub const HOST_INTERFACES: [&str; 2] = [HOST_INTERFACE, "sluice:stage/host@0.1.0"];
/// The types-only interfaces the host interfaces refer to (no functions).
const TYPES_INTERFACES: [&str; 2] = ["sluice:stage/types@0.2.0", "sluice:stage/types@0.1.0"];

/// Import namespaces a plugin may have: the host interface and the WASI 0.2
/// interfaces Rust's std pulls in (all linked to a context that denies).
pub(crate) fn import_allowed(name: &str) -> bool {
    if HOST_INTERFACES.contains(&name) || TYPES_INTERFACES.contains(&name) {
        return true;
    }
    const WASI_PACKAGES: [&str; 6] = ["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:filesystem/", "wasi:random/", "wasi:sockets/"];
    WASI_PACKAGES.iter().any(|p| name.starts_with(p)) && name.contains("@0.2.")
}

/// How a stage built with a language SDK (Python, JavaScript) reports an
/// exception it did not handle before it traps: `host.log` at level `error`
/// with a message starting with this. The trap is then a `panic` with that
/// message (the Rust SDK's panics are read from stderr instead), as the
/// WIT's `host.log` documents.
pub const UNCAUGHT_PREFIX: &str = "uncaught exception: ";

/// The most of an uncaught exception's message kept for the failure.
const MAX_UNCAUGHT_BYTES: usize = 4096;

/// The milliseconds one epoch tick lasts (see `Runtime`'s ticker).
pub(crate) const EPOCH_TICK_MS: u64 = 1;

/// Constructed by lifting from the guest, never by the host.
#[allow(dead_code)]
#[derive(ComponentType, Lift, Debug, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum GuestLevel {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
}

/// What every event a stage hands back must be: a type, and `data` that is
/// a JSON object (the host stores and serves it as one).
fn check_output(event: &Event) -> Result<(), String> {
    if event.kind.is_empty() {
        return Err("its type is empty".into());
    }
    check_data(&event.data)
}

/// `data` must be a JSON object.
fn check_data(data: &str) -> Result<(), String> {
    match serde_json::from_str::<&serde_json::value::RawValue>(data) {
        Ok(raw) if raw.get().starts_with('{') => Ok(()),
        Ok(_) => Err("its data is not a JSON object".into()),
        Err(e) => Err(format!("its data is not valid JSON: {e}")),
    }
}

pub(crate) fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    super::waits::shadow_blocking(&mut linker)?;
    for name in HOST_INTERFACES {
        add_host(&mut linker.instance(name)?)?;
    }
    Ok(linker)
}

/// Defines the host interface's functions in one of its names.
fn add_host(host: &mut LinkerInstance<'_, StoreState>) -> wasmtime::Result<()> {

    host.func_wrap(
        "log",
        |mut cx: StoreContextMut<'_, StoreState>, (level, message, fields): (GuestLevel, String, Vec<(String, String)>)| {
            let state = cx.data_mut();
            if matches!(level, GuestLevel::Error) {
                if let Some(what) = message.strip_prefix(UNCAUGHT_PREFIX) {
                    let mut end = what.len().min(MAX_UNCAUGHT_BYTES);
                    while !what.is_char_boundary(end) {
                        end -= 1;
                    }
                    state.call.uncaught = Some(what[..end].to_string());
                }
            }
            if let Some((message, fields)) = state.call.log.admit(message, &fields) {
                report::guest_log(&state.who, level as u8, &message, &fields);
            }
            Ok(())
        },
    )?;

    host.func_wrap("lookup", |cx: StoreContextMut<'_, StoreState>, (table, key): (String, String)| {
        Ok((cx.data().tables.lookup(&table, &key),))
    })?;

    host.func_wrap("begin", |mut cx: StoreContextMut<'_, StoreState>, (index,): (u32,)| {
        let fuel_budget = cx.data().limits.fuel;
        let remaining = cx.get_fuel()?;
        let state = cx.data_mut();
        let expected = state.call.current.map_or(0, |i| i + 1);
        if index != expected || index >= state.call.batch_len {
            let stop = HostStop::Contract(format!(
                "plugin announced event {index} of a batch of {}, expected {expected}",
                state.call.batch_len
            ));
            return Err(wasmtime::Error::new(stop));
        }
        if let Some(previous) = state.call.current {
            state.call.fuel_used[previous as usize] = fuel_budget.saturating_sub(remaining);
        }
        state.call.current = Some(index);
        state.call.uncaught = None;
        state.call.current_outputs = 0;
        state.call.current_output_bytes = 0;
        let timeout_ms = u64::from(state.limits.timeout_ms);
        cx.set_fuel(fuel_budget)?;
        StoreState::arm_deadline(&mut cx, timeout_ms);
        Ok(())
    })?;

    host.func_wrap("emit", |mut cx: StoreContextMut<'_, StoreState>, (event,): (Event,)| {
        let state = cx.data_mut();
        let index = current_input(state)?;
        if let Err(problem) = check_output(&event) {
            return Err(wasmtime::Error::new(HostStop::Contract(format!("plugin emitted an invalid event (id {:?}): {problem}", event.id))));
        }
        count_output(state, event.byte_size())?;
        state.call.emitted.push((index, Emitted::Event(event)));
        Ok(())
    })?;

    host.func_wrap("emit-data", |mut cx: StoreContextMut<'_, StoreState>, (data,): (String,)| {
        let state = cx.data_mut();
        let index = current_input(state)?;
        if let Err(problem) = check_data(&data) {
            return Err(wasmtime::Error::new(HostStop::Contract(format!("plugin emitted invalid data for input {index}: {problem}"))));
        }
        let head = state.call.head_bytes.get(index as usize).copied().unwrap_or(0) as usize;
        count_output(state, head + data.len())?;
        state.call.emitted.push((index, Emitted::Data(data)));
        Ok(())
    })?;

    Ok(())
}

/// The input the guest is processing (`begin`); emitting outside one breaks the contract.
fn current_input(state: &StoreState) -> wasmtime::Result<u32> {
    state.call.current.ok_or_else(|| wasmtime::Error::new(HostStop::Contract("plugin emitted an event outside of any input".into())))
}

/// Bytes of outputs one batch may produce in one stage, over all its calls
/// (whatever the per-input caps allow): what a worker holds for one stage
/// of one queue read. An input whose outputs would pass it fails with
/// `output_limit`.
pub const MAX_BATCH_OUTPUT_BYTES: usize = 64 << 20;

/// Counts one more output of the current input against its caps and the
/// call's budget.
fn count_output(state: &mut StoreState, bytes: usize) -> wasmtime::Result<()> {
    state.call.current_outputs += 1;
    state.call.current_output_bytes += bytes;
    state.call.call_output_bytes += bytes;
    if state.call.call_output_bytes > state.call.call_output_budget {
        let stop = HostStop::OutputLimit(format!(
            "the outputs of this input's batch passed the host's budget of {} MiB per stage per queue read; this input's outputs \
             did not fit (replay it from the DLQ: it runs in a batch of its own)",
            MAX_BATCH_OUTPUT_BYTES >> 20
        ));
        return Err(wasmtime::Error::new(stop));
    }
    let limits = &state.limits;
    if state.call.current_outputs > limits.max_outputs {
        let stop = HostStop::OutputLimit(format!("input produced more than {} events (limits.max_outputs)", limits.max_outputs));
        return Err(wasmtime::Error::new(stop));
    }
    if state.call.current_output_bytes > limits.max_output_bytes as usize {
        let stop = HostStop::OutputLimit(format!(
            "input produced more than {} bytes of events (limits.max_output_bytes)",
            limits.max_output_bytes
        ));
        return Err(wasmtime::Error::new(stop));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::import_allowed;

    #[test]
    fn allows_only_the_granted_namespaces() {
        assert!(import_allowed("sluice:stage/host@0.1.0"));
        assert!(import_allowed("sluice:stage/types@0.1.0"));
        assert!(import_allowed("sluice:stage/host@0.2.0"));
        assert!(import_allowed("sluice:stage/types@0.2.0"));
        assert!(import_allowed("wasi:cli/environment@0.2.3"));
        assert!(import_allowed("wasi:sockets/tcp@0.2.0"));
        assert!(!import_allowed("wasi:http/outgoing-handler@0.2.0"));
        assert!(!import_allowed("wasi:cli/environment@0.3.0"));
        assert!(!import_allowed("sluice:stage/host@0.3.0"));
        assert!(!import_allowed("acme:evil/net"));
    }
}
