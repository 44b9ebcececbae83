//! Safe retries for producers (API.md v1.1): the `Idempotency-Key` an
//! ingest request may carry, checked, and the record the store keeps of
//! the request's answer. The store writes the record in the same atomic
//! step as the events (see `Queue::enqueue_with`), so an answer lost to a
//! timeout can be asked for again with the same key and nothing is queued
//! twice.

use sha2::{Digest, Sha256};

use crate::domain::{IdempotencyRecord, IDEMPOTENCY_TTL_MS};

/// Longest `Idempotency-Key` accepted (API.md).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// A producer's `Idempotency-Key`, checked: 1 to 128 printable ASCII
/// characters (space to `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Checks a header's raw value; the error says what is wrong with it.
    pub fn parse(raw: &[u8]) -> Result<IdempotencyKey, String> {
        if raw.is_empty() {
            return Err("the Idempotency-Key header is empty; send 1 to 128 printable ASCII characters".into());
        }
        if raw.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(format!("the Idempotency-Key header has {} characters; at most {MAX_IDEMPOTENCY_KEY_LEN}", raw.len()));
        }
        if let Some(at) = raw.iter().position(|b| !(b' '..=b'~').contains(b)) {
            return Err(format!(
                "the Idempotency-Key header has a byte that is not printable ASCII (0x{:02x} at {at}); use characters from space to `~`",
                raw[at]
            ));
        }
        // Every byte is ASCII (checked above).
        Ok(IdempotencyKey(String::from_utf8_lossy(raw).into_owned()))
    }

    /// The record of a request with this key and `body` whose answer (as
    /// computed before the store step) is `answer`, kept 24 h.
    pub fn record(&self, body: &[u8], answer: String) -> IdempotencyRecord {
        IdempotencyRecord {
            key_sha: hex::encode(Sha256::digest(self.0.as_bytes())),
            body_sha: hex::encode(Sha256::digest(body)),
            answer,
            ttl_ms: IDEMPOTENCY_TTL_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_128_printable_ascii_characters() {
        for ok in ["a", "order 42/retry-1", "~ !", &"k".repeat(128)] {
            assert!(IdempotencyKey::parse(ok.as_bytes()).is_ok(), "{ok:?}");
        }
        let err = IdempotencyKey::parse(b"").unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = IdempotencyKey::parse("k".repeat(129).as_bytes()).unwrap_err();
        assert!(err.contains("129 characters"), "{err}");
        for bad in [&b"tab\there"[..], b"nul\0", b"del\x7f", "é".as_bytes()] {
            let err = IdempotencyKey::parse(bad).unwrap_err();
            assert!(err.contains("not printable ASCII"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_record_digests_key_and_body() {
        let key = IdempotencyKey::parse(b"k1").unwrap();
        let a = key.record(b"body", "{}".into());
        assert_eq!((a.key_sha.len(), a.body_sha.len(), a.ttl_ms), (64, 64, 86_400_000));
        assert_eq!(a.key_sha, key.record(b"other", "{}".into()).key_sha, "found by the key alone");
        assert_ne!(a.body_sha, key.record(b"other", "{}".into()).body_sha);
        assert_ne!(a.key_sha, IdempotencyKey::parse(b"k2").unwrap().record(b"body", "{}".into()).key_sha);
    }
}
