//! What the host grants a stage: logging and read-only lookup tables.
//!
//! Natively (tests, benchmarks) logging goes to stderr and lookups read
//! tables set with [`crate::native::set_table`].

/// Log levels, as the host's log knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes a structured line into the host's log, attributed to this stage.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::__export::bindings::sluice::stage::host as imports;
        let level = match level {
            Level::Trace => imports::Level::Trace,
            Level::Debug => imports::Level::Debug,
            Level::Info => imports::Level::Info,
            Level::Warn => imports::Level::Warn,
            Level::Error => imports::Level::Error,
        };
        imports::log(level, message, fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::native::log(level, message, fields);
}

/// `log(Level::Info, ...)` without fields.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// `log(Level::Warn, ...)` without fields.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Looks `key` up in the host table `table`; `None` when either is absent.
pub fn lookup(table: &str, key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::__export::bindings::sluice::stage::host::lookup(table, key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::native::lookup(table, key)
    }
}
