//! Finding top-level members by searching for their quoted keys.
//!
//! Walking an object member by member costs some two hundred metered
//! instructions per member in WebAssembly, however short the member. But in
//! JSON text without backslashes, quotes alternate between opening and
//! closing a string, so wherever `"key"` is followed by a colon, that is a
//! member's key; and if no `{` or `[` came before it (other than the
//! object's own), the member is a top-level one, and the first such place is
//! the first member of that name. So the search only looks for quotes
//! followed by a key's first letter (with SIMD, sixty-four bytes per step)
//! and checks those few places.
//!
//! The search gives up ([`Flat::Unknown`]) at the first backslash, `{` or `[`
//! before every key was found: the caller then walks the structure. Events'
//! `data` is mostly flat; a nested value found as a key's value is skipped
//! whole, so it does not stop the search.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use super::{skip_whitespace, value_end, Found, BAD, ESCAPED};

/// What [`find`] learned.
#[derive(Debug, PartialEq)]
pub(crate) enum Flat {
    /// Every key was found.
    AllFound,
    /// The object ends (at its `}`, index `close`) without the keys not
    /// found: they are absent. `empty`: it has no members at all.
    Ended { close: usize, empty: bool },
    /// The text is not flat enough to tell: walk it.
    Unknown,
}

/// The most distinct first bytes of keys the search looks for at once.
const MAX_FIRSTS: usize = 4;

/// Finds the first top-level member named each of `keys` in the JSON object
/// `text`: `found[i]` gets the byte range of the value of `keys[i]` and
/// whether it is a string with escapes (only the first of equal keys gets
/// one). `found` must start all `None`, as long as `keys`.
///
/// The text must be well-formed JSON (the host guarantees `data` is);
/// otherwise the answer may be wrong but is never out of bounds.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
pub(crate) fn find(text: &str, keys: &[&str], found: &mut [Found]) -> Flat {
    debug_assert_eq!(keys.len(), found.len());
    let bytes = text.as_bytes();
    let len = bytes.len();
    let mut firsts = [0u8; MAX_FIRSTS];
    let mut distinct = 0;
    for key in keys {
        // A key that has to be escaped in JSON never appears as it is.
        let Some(&first) = key.as_bytes().first() else { return Flat::Unknown };
        if key.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            return Flat::Unknown;
        }
        if !firsts[..distinct].contains(&first) {
            if distinct == MAX_FIRSTS {
                return Flat::Unknown;
            }
            firsts[distinct] = first;
            distinct += 1;
        }
    }
    let firsts = &firsts[..distinct];
    let open = skip_whitespace(bytes, 0);
    if bytes.get(open) != Some(&b'{') {
        return Flat::Unknown;
    }
    let first_member = skip_whitespace(bytes, open + 1);
    if bytes.get(first_member) == Some(&b'}') {
        return Flat::Ended { close: first_member, empty: true };
    }
    let mut missing = keys.len();
    let mut at = open + 1;
    'blocks: while at < len {
        // 64 bytes at a time while there are enough, then 16.
        let (width, block) = if at + 65 <= len { (64, masks64(bytes, at, firsts)) } else { (16, masks(bytes, at, firsts)) };
        // Only quotes before the first backslash or bracket can be trusted.
        let trusted = if block.bail != 0 { (1u64 << block.bail.trailing_zeros()) - 1 } else { u64::MAX };
        let mut candidates = block.candidates & trusted;
        while candidates != 0 {
            let quote = at + candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            // Like a map: a member goes to the first key of its name, if
            // that one has none yet.
            let name = &bytes[quote + 1..];
            let Some(i) = keys.iter().position(|key| {
                // The first byte before the whole comparison (a call).
                name[0] == key.as_bytes()[0] && name.starts_with(key.as_bytes()) && name.get(key.len()) == Some(&b'"')
            }) else {
                continue;
            };
            if found[i].is_some() {
                continue;
            }
            let colon = skip_whitespace(bytes, quote + keys[i].len() + 2);
            if bytes.get(colon) != Some(&b':') {
                // A string value that happens to read `"key"`.
                continue;
            }
            let start = skip_whitespace(bytes, colon + 1);
            let end = value_end(bytes, start);
            if end == BAD {
                return Flat::Unknown;
            }
            found[i] = Some((start..end & !ESCAPED, end & ESCAPED != 0));
            missing -= 1;
            if missing == 0 {
                return Flat::AllFound;
            }
            // Go on after the value (a nested one is skipped whole).
            at = end & !ESCAPED;
            continue 'blocks;
        }
        if block.bail != 0 {
            return Flat::Unknown;
        }
        at += width;
    }
    let close = text.trim_end().len().wrapping_sub(1);
    if bytes.get(close) != Some(&b'}') {
        return Flat::Unknown;
    }
    Flat::Ended { close, empty: false }
}

/// Bit `i` of each mask is about byte `at + i` of the text (for the 16 or 64
/// bytes from `at` a block covers).
struct Masks {
    /// Quotes followed by one of the keys' first bytes.
    candidates: u64,
    /// Backslashes, `{` and `[`.
    bail: u64,
}

/// [`masks`] of the 64 bytes from `at` (the caller guarantees
/// `at + 65 <= bytes.len()`: each byte's successor is read too).
#[cfg(target_arch = "wasm32")]
#[inline]
#[target_feature(enable = "simd128")]
fn masks64(bytes: &[u8], at: usize, firsts: &[u8]) -> Masks {
    use core::arch::wasm32::{i8x16_eq, u8x16_bitmask, u8x16_splat, u8x16_sub, u8x16_lt, v128, v128_and, v128_load, v128_or};
    debug_assert!(at + 65 <= bytes.len());
    // Up to four first bytes, padded with repeats of the first; one key
    // (the usual lookup) needs one comparison.
    let first = |i: usize| u8x16_splat(*firsts.get(i).unwrap_or(&firsts[0]));
    let (f0, f1, f2, f3) = (first(0), first(1), first(2), first(3));
    let single = firsts.len() == 1;
    let mut masks = Masks { candidates: 0, bail: 0 };
    for k in 0..4 {
        let from = at + 16 * k;
        // SAFETY: `from + 17 <= at + 65 <= bytes.len()`; `v128_load` has
        // no alignment requirement.
        let (here, next) =
            unsafe { (v128_load(bytes.as_ptr().add(from).cast::<v128>()), v128_load(bytes.as_ptr().add(from + 1).cast::<v128>())) };
        let follows = if single {
            i8x16_eq(next, f0)
        } else {
            v128_or(v128_or(i8x16_eq(next, f0), i8x16_eq(next, f1)), v128_or(i8x16_eq(next, f2), i8x16_eq(next, f3)))
        };
        let candidates = u8x16_bitmask(v128_and(i8x16_eq(here, u8x16_splat(b'"')), follows));
        // `[` and `\` are adjacent (0x5b, 0x5c): one range test for both.
        let bail = v128_or(u8x16_lt(u8x16_sub(here, u8x16_splat(b'[')), u8x16_splat(2)), i8x16_eq(here, u8x16_splat(b'{')));
        masks.candidates |= u64::from(candidates) << (16 * k);
        masks.bail |= u64::from(u8x16_bitmask(bail)) << (16 * k);
    }
    masks
}

#[cfg(not(target_arch = "wasm32"))]
fn masks64(bytes: &[u8], at: usize, firsts: &[u8]) -> Masks {
    let mut masks = Masks { candidates: 0, bail: 0 };
    for k in 0..4 {
        let block = scalar_masks(bytes, at + 16 * k, firsts);
        masks.candidates |= block.candidates << (16 * k);
        masks.bail |= block.bail << (16 * k);
    }
    masks
}

/// The masks of the (up to) 16 bytes from `at`.
#[cfg(target_arch = "wasm32")]
#[inline]
#[target_feature(enable = "simd128")]
fn masks(bytes: &[u8], at: usize, firsts: &[u8]) -> Masks {
    use core::arch::wasm32::{i8x16_eq, i8x16_shuffle, u8x16_bitmask, u8x16_splat, v128, v128_and, v128_load, v128_or};
    let len = bytes.len();
    if len < 16 {
        return scalar_masks(bytes, at, firsts);
    }
    // Sixteen bytes from `at`, and the sixteen after each of them; at the end
    // of the text, its last sixteen bytes (shifted down to start at `at`).
    let (base, here, next) = if at + 17 <= len {
        // SAFETY: `at + 17 <= len`: both loads are in bounds; `v128_load`
        // has no alignment requirement.
        unsafe { (at, v128_load(bytes.as_ptr().add(at).cast::<v128>()), v128_load(bytes.as_ptr().add(at + 1).cast::<v128>())) }
    } else {
        // SAFETY: `len >= 16`; no alignment is required.
        let here = unsafe { v128_load(bytes.as_ptr().add(len - 16).cast::<v128>()) };
        // The byte after the text's last is none of the first bytes (0).
        let next = i8x16_shuffle::<1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16>(here, u8x16_splat(0));
        (len - 16, here, next)
    };
    let mut first = u8x16_splat(0);
    for &byte in firsts {
        first = v128_or(first, i8x16_eq(next, u8x16_splat(byte)));
    }
    let candidates = u64::from(u8x16_bitmask(v128_and(i8x16_eq(here, u8x16_splat(b'"')), first)));
    let bail = v128_or(
        v128_or(i8x16_eq(here, u8x16_splat(b'\\')), i8x16_eq(here, u8x16_splat(b'{'))),
        i8x16_eq(here, u8x16_splat(b'[')),
    );
    let bail = u64::from(u8x16_bitmask(bail));
    Masks { candidates: candidates >> (at - base), bail: bail >> (at - base) }
}

#[cfg(not(target_arch = "wasm32"))]
fn masks(bytes: &[u8], at: usize, firsts: &[u8]) -> Masks {
    scalar_masks(bytes, at, firsts)
}

/// [`masks`] a byte at a time (short texts, and native builds, which use the
/// search only in the unit tests).
fn scalar_masks(bytes: &[u8], at: usize, firsts: &[u8]) -> Masks {
    let mut masks = Masks { candidates: 0, bail: 0 };
    for (i, &byte) in bytes[at..].iter().take(16).enumerate() {
        if byte == b'"' && bytes.get(at + i + 1).is_some_and(|next| firsts.iter().any(|first| first == next)) {
            masks.candidates |= 1 << i;
        }
        if matches!(byte, b'\\' | b'{' | b'[') {
            masks.bail |= 1 << i;
        }
    }
    masks
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::{walk_object, Walk};
    use super::*;

    /// What the structural walk answers for the same question.
    fn walked(text: &str, keys: &[&str]) -> (Vec<Found>, Option<(usize, bool)>) {
        let mut found = vec![None; keys.len()];
        let walk = walk_object(text, |key, value, escaped| {
            if let Some(i) = keys.iter().position(|k| key.is(k)) {
                found[i].get_or_insert((value, escaped));
            }
            true
        });
        let end = match walk {
            Some(Walk::Ended { close, empty, .. }) => Some((close, empty)),
            _ => None,
        };
        (found, end)
    }

    /// Pseudo-random objects (long and short members, nested values,
    /// escapes, whitespace) and key sets: the search agrees with the walk
    /// whenever it answers. Shared with the WebAssembly self-test.
    pub(crate) fn random_cases(mut check: impl FnMut(&str, &[&str])) {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let names = ["ua", "url", "u", "email", "host", "path", "query", "q", "x"];
        let values = [
            "1", "-2.5e3", "true", "null", r#""""#, r#""ua""#, r#""url""#, r#""https://h/p?q=1""#, r#""a\"b""#, r#""\u0075a""#,
            r#"{"ua":"n"}"#, r#"[1,{"url":2}]"#, r#""[{""#, r#""0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef""#,
        ];
        for _ in 0..3000 {
            let mut text = String::from("{");
            for m in 0..next(12) {
                if m > 0 {
                    text.push_str([",", " , ", ",\n"][next(3)]);
                }
                let name = if next(10) == 0 { "u\\u0061" } else { names[next(names.len())] };
                text.push_str(&format!(r#""{name}"{}:{}"#, [""," "][next(2)], values[next(values.len())]));
            }
            text.push('}');
            let keys: Vec<&str> = (0..1 + next(3)).map(|_| names[next(names.len())]).collect();
            check(&text, &keys);
        }
    }

    /// The check [`random_cases`] runs: `None` when it agrees.
    pub(crate) fn disagreement(text: &str, keys: &[&str]) -> Option<String> {
        let mut found = vec![None; keys.len()];
        let (expected, end) = walked(text, keys);
        let agrees = match find(text, keys, &mut found) {
            Flat::AllFound => found.iter().all(Option::is_some) && found == expected,
            Flat::Ended { close, empty } => found == expected && Some((close, empty)) == end,
            Flat::Unknown => true,
        };
        (!agrees).then(|| format!("{text} {keys:?}: {found:?} vs {expected:?}"))
    }

    #[test]
    fn agrees_with_the_walk_on_random_objects() {
        let (mut cases, mut answered) = (0, 0);
        random_cases(|text, keys| {
            cases += 1;
            let mut found = vec![None; keys.len()];
            answered += usize::from(find(text, keys, &mut found) != Flat::Unknown);
            assert_eq!(disagreement(text, keys), None);
        });
        // Many cases are answered without the walk (a fifth of the values
        // here have escapes or brackets, which the search leaves to it).
        assert!(answered * 5 > cases, "{answered} of {cases}");
    }

    #[test]
    fn agrees_with_the_walk_or_gives_up() {
        let texts = [
            r#"{}"#,
            r#" { } "#,
            r#"{"url":"https://a/x","ua":"Mozilla","email":"a@b","n":12,"t":true,"z":null}"#,
            r#"{"a":"ua","ua":"x"}"#,
            r#"{"a" : "url" , "url" : "y" }"#,
            r#"{"uaa":1,"u":2,"ua":3}"#,
            r#"{"ua":{"ua":1},"url":[1,{"url":2}],"email":"e"}"#,
            r#"{"n":[1],"ua":"x"}"#,
            r#"{"n":"a\"ua\":1","ua":"x"}"#,
            r#"{"ua":"x\"y","url":"z"}"#,
            r#"{"ua":"x","ua":"y","url":"z"}"#,
            r#"{"query":{"q":"1"},"host":"h","path":"/p"}"#,
            "{\n  \"email\": \"a@b\",\n  \"ua\": \"bot\"\n}\n",
            r#"{"long":"0123456789abcdef0123456789abcdef","url":"0123456789abcdef","ua":"0123456789abcdef0123"}"#,
            r#"{"long":"0123456789abcdef0123456789abcdef","x":"0123456789abcdef","y":"0123456789abcd{ef0123"}"#,
        ];
        let key_sets: [&[&str]; 6] =
            [&["ua"], &["url"], &["email"], &["host", "path", "query"], &["ua", "url", "ua"], &["q", "n", "long", "z"]];
        for text in texts {
            for keys in key_sets {
                let mut found = vec![None; keys.len()];
                let (expected, end) = walked(text, keys);
                match find(text, keys, &mut found) {
                    Flat::AllFound => assert!(found.iter().all(Option::is_some) && found == expected, "{text} {keys:?}"),
                    Flat::Ended { close, empty } => {
                        assert_eq!(found, expected, "{text} {keys:?}");
                        assert_eq!(Some((close, empty)), end, "{text} {keys:?}");
                    }
                    Flat::Unknown => assert!(text.contains(['\\', '[']) || text[1..].contains('{'), "gave up on {text} {keys:?}"),
                }
            }
        }
    }
}
