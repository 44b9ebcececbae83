//! `parse_ingest` on any UTF-8 text must agree with the serde_json oracle
//! of the ingest fuzz test (`host/tests/ingest_fuzz/oracle.rs`): same
//! accept/reject, same values. Run: `cargo +nightly fuzz run ingest_parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../host/tests/ingest_fuzz/oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(why) = oracle::check_event(text) {
            panic!("parse_ingest differs from the oracle: {why}");
        }
    }
});
