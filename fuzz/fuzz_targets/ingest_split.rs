//! `split` on any body must agree with the serde_json oracle of the ingest
//! fuzz test (`host/tests/ingest_fuzz/oracle.rs`); the first byte picks JSON
//! or NDJSON framing. Run: `cargo +nightly fuzz run ingest_split`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::api::ingest::split::Format;

#[path = "../../host/tests/ingest_fuzz/oracle.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let format = if first % 2 == 0 { Format::Json } else { Format::NdJson };
    if let Err(why) = oracle::check_split(format, body) {
        panic!("split differs from the oracle: {why}");
    }
});
