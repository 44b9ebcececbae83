//! Byte searches for stage code, fast in the WebAssembly guest.
//!
//! In WebAssembly every instruction of a stage is metered for fuel, and a
//! plain byte loop (`iter().position(..)`) costs some thirty of them per byte.
//! These functions look at sixteen bytes per step with WebAssembly SIMD
//! (part of WebAssembly 2.0, on in wasmtime by default) and answer exactly
//! what the byte loop would. Natively (unit tests, benchmarks) they are the
//! byte loop.
//!
//! ```
//! use sluice_sdk::scan::{find_any, find_byte};
//!
//! let url = b"https://example.com/a?q=1#top";
//! assert_eq!(find_byte(url, b'?'), Some(21));
//! assert_eq!(find_any(&url[8..], b"/?#"), Some(11));
//! assert_eq!(find_any(url, b"@"), None);
//! ```

/// The index of the first `needle` in `haystack`.
#[inline]
pub fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    find_any(haystack, &[needle])
}

/// The index of the first byte of `haystack` that is one of `needles` (a
/// few bytes: each costs a comparison per step).
#[inline]
pub fn find_any(haystack: &[u8], needles: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "wasm32")]
    return simd::find_any(haystack, needles);
    #[cfg(not(target_arch = "wasm32"))]
    return position_bytewise(haystack, needles);
}

/// The byte loop. (`needles.contains(b)` would call `memchr` per byte.)
#[inline]
#[allow(clippy::manual_contains)]
fn position_bytewise(haystack: &[u8], needles: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| needles.iter().any(|&needle| needle == b))
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::{i8x16_eq, u8x16_bitmask, u8x16_splat, v128, v128_load, v128_load64_zero, v128_or};

    /// The positions among the 16 bytes of `chunk` that hold one of `needles`.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn hits(chunk: v128, needles: &[u8]) -> u32 {
        let mut hits = u8x16_splat(0);
        for &needle in needles {
            hits = v128_or(hits, i8x16_eq(chunk, u8x16_splat(needle)));
        }
        u32::from(u8x16_bitmask(hits))
    }

    #[target_feature(enable = "simd128")]
    pub(super) fn find_any(haystack: &[u8], needles: &[u8]) -> Option<usize> {
        let len = haystack.len();
        let ptr = haystack.as_ptr();
        if len < 16 {
            if len < 8 {
                return super::position_bytewise(haystack, needles);
            }
            // SAFETY (both): 8 bytes at 0 and at `len - 8` are in bounds;
            // no alignment is required. The upper half loads as zeros.
            let first = hits(unsafe { v128_load64_zero(ptr.cast::<u64>()) }, needles) & 0xff;
            if first != 0 {
                return Some(first.trailing_zeros() as usize);
            }
            let last = hits(unsafe { v128_load64_zero(ptr.add(len - 8).cast::<u64>()) }, needles) & 0xff;
            return (last != 0).then(|| len - 8 + last.trailing_zeros() as usize);
        }
        // SAFETY: every `at` below has `at + 16 <= len`; `v128_load` has no
        // alignment requirement.
        let hits_at = |at: usize| hits(unsafe { v128_load(ptr.add(at).cast::<v128>()) }, needles);
        let mut at = 0;
        while at + 16 <= len {
            let mask = hits_at(at);
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at += 16;
        }
        if at == len {
            return None;
        }
        // The last bytes: the haystack's last 16, minus those seen already.
        let mask = hits_at(len - 16) >> (at - (len - 16));
        (mask != 0).then(|| at + mask.trailing_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_a_byte_loop_finds() {
        for len in 0..50 {
            for at in 0..len {
                let mut haystack = vec![b'a'; len];
                haystack[at] = b'?';
                if at + 3 < len {
                    haystack[at + 3] = b'#';
                }
                assert_eq!(find_byte(&haystack, b'?'), Some(at));
                assert_eq!(find_any(&haystack, b"#?"), Some(at));
                assert_eq!(find_any(&haystack, b"#"), (at + 3 < len).then_some(at + 3));
                assert_eq!(find_any(&haystack, b"/"), None);
            }
        }
    }
}
