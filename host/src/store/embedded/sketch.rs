//! The distinct-count sketches the embedded store keeps: HyperLogLog++ at
//! precision 14 over values hashed by a hash spelled out here (stored data
//! must read the same after an upgrade).

use std::hash::{BuildHasher, Hasher};

use hyperloglogplus::HyperLogLogPlus;
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, StoreResult};

/// Precision of the distinct-count sketches: 2^14 registers, a standard
/// error of about 0.8 %.
const SKETCH_PRECISION: u8 = 14;

/// A distinct-count sketch as stored: HLL++ over pre-hashed values.
pub(super) type Sketch = HyperLogLogPlus<u64, PreHashed>;

/// Hashes a `count_distinct` value for the sketches: FNV-1a over the UTF-8
/// bytes, then MurmurHash3's 64-bit finalizer so every output bit depends on
/// every input bit (HLL takes the top bits as the register index and counts
/// zeros in the rest). Spelled out here instead of std's `DefaultHasher`
/// because sketches are stored: std does not promise its algorithm across
/// releases, and a changed hash would count every value seen before an
/// upgrade a second time.
pub(super) fn value_hash(value: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The sketches' `BuildHasher`. Values reach the sketch already hashed by
/// [`value_hash`], so its hasher passes the `u64` through. A unit struct, so
/// a sketch serializes (and deserializes) with no state of its own.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct PreHashed;

/// The hasher of [`PreHashed`]: `finish` answers the `u64` written.
pub(super) struct PreHashedHasher(u64);

impl BuildHasher for PreHashed {
    type Hasher = PreHashedHasher;

    fn build_hasher(&self) -> PreHashedHasher {
        PreHashedHasher(0)
    }
}

impl Hasher for PreHashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    /// Only `u64`s are hashed; should std ever hash one as its bytes, the
    /// answer stays the same.
    fn write(&mut self, bytes: &[u8]) {
        self.0 = match <[u8; 8]>::try_from(bytes) {
            Ok(b) => u64::from_ne_bytes(b),
            Err(_) => bytes.iter().fold(self.0, |h, b| h.rotate_left(8) ^ u64::from(*b)),
        };
    }
}

pub(super) fn new_sketch() -> Sketch {
    // Only fails for a precision outside 4..=18.
    Sketch::new(SKETCH_PRECISION, PreHashed).expect("SKETCH_PRECISION is a valid HLL precision")
}

pub(super) fn parse_sketch(bytes: &[u8], what: impl FnOnce() -> String) -> StoreResult<Sketch> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("bad stored sketch {}: {e}", what())))
}