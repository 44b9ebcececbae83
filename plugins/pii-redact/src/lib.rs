//! `pii-redact`: replaces personal fields before events leave the pipeline.
//! Config: `{"fields": ["data.email", ...], "mode": "hash"|"mask", "salt": "..."}`.
//! `hash` replaces a value with the hex SHA-256 of `salt` + value (stable,
//! so counts and joins still work); `mask` keeps an email's first character
//! and domain (`j***@example.com`) and stars out anything else. Absent fields
//! are left absent; non-string values are redacted as their JSON text.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_sdk::{Context, Emit, Event, Stage, StageError, Value};

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Hash,
    Mask,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    fields: Vec<String>,
    mode: Mode,
    salt: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { fields: vec!["data.email".into()], mode: Mode::Hash, salt: String::new() }
    }
}

pub struct PiiRedact {
    fields: Vec<String>,
    mode: Mode,
    /// A SHA-256 that has already taken in the salt: each value's hash
    /// starts from a copy of it instead of hashing the salt again.
    salted: Sha256,
}

/// `j***@example.com` for an email, `****` (same length) for anything else.
pub fn mask(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            let first = local.chars().next().expect("non-empty");
            format!("{first}***@{domain}")
        }
        _ => "*".repeat(value.chars().count()),
    }
}

impl PiiRedact {
    fn new(fields: Vec<String>, mode: Mode, salt: &str) -> PiiRedact {
        PiiRedact { fields, mode, salted: Sha256::new_with_prefix(salt.as_bytes()) }
    }

    fn redact(&self, value: &str) -> String {
        match self.mode {
            Mode::Hash => lower_hex(&self.salted.clone().chain_update(value.as_bytes()).finalize().into()),
            Mode::Mask => mask(value),
        }
    }
}

/// Lower-case hex, as `hex::encode` writes it. In WebAssembly a loop costs
/// some forty metered instructions per byte, so there the digits are looked
/// up sixteen at a time with SIMD; elsewhere from a table.
fn lower_hex(digest: &[u8; 32]) -> String {
    let digits = hex_digits(digest);
    std::str::from_utf8(&digits).expect("hex digits are ASCII").to_owned()
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

#[cfg(not(target_arch = "wasm32"))]
fn hex_digits(digest: &[u8; 32]) -> [u8; 64] {
    let mut text = [0u8; 64];
    for (pair, byte) in text.chunks_exact_mut(2).zip(digest) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
    text
}

#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
fn hex_digits(digest: &[u8; 32]) -> [u8; 64] {
    use core::arch::wasm32::{i8x16_shuffle, i8x16_swizzle, u8x16_shr, u8x16_splat, v128, v128_and, v128_load, v128_store};
    // SAFETY (loads and stores): 16 bytes at 0 and 16 of the 32-byte digest,
    // at 0, 16, 32 and 48 of the 64-byte text; no alignment is required.
    let table = unsafe { v128_load(DIGITS.as_ptr().cast::<v128>()) };
    let mut text = [0u8; 64];
    for half in 0..2 {
        let bytes = unsafe { v128_load(digest.as_ptr().add(16 * half).cast::<v128>()) };
        let high = i8x16_swizzle(table, u8x16_shr(bytes, 4));
        let low = i8x16_swizzle(table, v128_and(bytes, u8x16_splat(0xf)));
        // Interleave: each byte's high digit, then its low one.
        let first = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(high, low);
        let second = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(high, low);
        unsafe {
            v128_store(text.as_mut_ptr().add(32 * half).cast::<v128>(), first);
            v128_store(text.as_mut_ptr().add(32 * half + 16).cast::<v128>(), second);
        }
    }
    text
}

impl Stage for PiiRedact {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        if config.fields.is_empty() {
            return Err("fields must name at least one field, e.g. [\"data.email\"]".into());
        }
        if let Some(bad) = config.fields.iter().find(|f| !f.starts_with("data.") || f.len() <= 5) {
            return Err(format!("field {bad:?} must be a path inside data, like \"data.email\""));
        }
        Ok(PiiRedact::new(config.fields, config.mode, &config.salt))
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        for field in &self.fields {
            // Strings, the usual case, are read borrowed; anything else is
            // redacted as its JSON text.
            let redacted = match event.get_str(field) {
                Some(s) => self.redact(&s),
                None => match event.get::<Value>(field) {
                    None | Some(Value::Null) => continue,
                    Some(other) => self.redact(&other.to_string()),
                },
            };
            event.set(field, redacted);
        }
        Ok(Emit::Pass)
    }
}

sluice_sdk::export_stage!(PiiRedact);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask("jane@example.com"), "j***@example.com");
        assert_eq!(mask("12345"), "*****");
    }

    #[test]
    fn hashes_salt_and_value_to_lower_hex() {
        let stage = PiiRedact::new(vec!["data.email".into()], Mode::Hash, "s");
        assert_eq!(stage.redact("jane@example.com"), "05c0763415f08a7e0f7d379cc08532befd25ad7e9668d1687e7fef22df5945f9");
        // The same for every length and salt, whatever the blocks the salt fills.
        for salt in ["", "s", &"x".repeat(63), &"y".repeat(64), &"z".repeat(100)] {
            let stage = PiiRedact::new(vec!["data.email".into()], Mode::Hash, salt);
            for len in [0, 1, 55, 56, 64, 200] {
                let value = "v".repeat(len);
                assert_eq!(stage.redact(&value), hex::encode(Sha256::digest(format!("{salt}{value}"))), "{salt:?} {len}");
            }
        }
    }
}
