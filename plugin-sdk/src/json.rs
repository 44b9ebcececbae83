//! Scanning and writing JSON text without building values.
//!
//! `data` crosses the boundary as JSON text, and most stages read a field or
//! two and add or replace a top-level key. Going through serde for that
//! (a `Deserializer` visiting every key, `IgnoredAny` for the values skipped,
//! `to_string` per value written) costs several times what the job needs
//! inside WebAssembly, where every instruction is also metered for fuel. The
//! functions here do only what those operations need: find where a member's
//! value starts and ends, and write a value's text.
//!
//! The host guarantees `data` is a well-formed JSON object (ingest checks
//! it, and so does the host for every event a stage emits), so the scanner
//! checks only as much as it needs to find its way: structure, strings and
//! where values end. On malformed text it answers `None` or a best effort,
//! never panics, and never slices outside the text.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::{Map, Value};

mod flat;

/// `0x01` in every byte of a word.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether a byte ends a run of plain string bytes: a quote, a backslash or a
/// control character. These are exactly the bytes JSON requires escaped, so
/// the same test serves the scanner and the writer.
#[inline(always)]
fn is_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// The high bit set in each byte of `word` that may be special; the lowest
/// one set is exactly the first special byte. (The classic "has a zero
/// byte" tricks flag false positives only in bytes above a true one.)
#[inline(always)]
fn special_flags(word: u64) -> u64 {
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let flags = (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (word.wrapping_sub(ONES * 0x20) & !word);
    flags & HIGHS
}

/// The index of the first special byte (see [`is_special`]) at or after
/// `at`, or `bytes.len()` if there is none.
///
/// In WebAssembly, sixteen bytes per step with SIMD (part of WebAssembly
/// 2.0, on in wasmtime by default): about one metered instruction per byte
/// where a byte loop takes eight. The functions that scan are compiled with
/// `simd128` enabled too (`#[target_feature]`), so this inlines into them.
/// Natively, eight bytes per step (SWAR).
#[cfg(target_arch = "wasm32")]
#[inline]
#[target_feature(enable = "simd128")]
fn next_special(bytes: &[u8], at: usize) -> usize {
    // Kept small so it inlines: most strings end within their first
    // sixteen bytes; longer runs and the text's last bytes go out of line.
    if at + 16 <= bytes.len() {
        let mask = simd::special_mask(bytes, at);
        if mask != 0 {
            return at + mask.trailing_zeros() as usize;
        }
        return simd::next_special_from(bytes, at + 16);
    }
    simd::next_special_from(bytes, at)
}

#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::{i8x16_eq, u8x16_bitmask, u8x16_lt, u8x16_splat, v128, v128_load, v128_or};

    /// Which of the 16 bytes at `at` are special (bit `i` for byte `at + i`).
    /// The caller guarantees `at + 16 <= bytes.len()`.
    #[inline]
    #[target_feature(enable = "simd128")]
    pub(super) fn special_mask(bytes: &[u8], at: usize) -> u32 {
        debug_assert!(at + 16 <= bytes.len());
        // SAFETY: `at + 16 <= bytes.len()` (above); `v128_load` has no
        // alignment requirement.
        special_mask_of(unsafe { v128_load(bytes.as_ptr().add(at).cast::<v128>()) })
    }

    /// Which of the bytes at `at..len` of a text of fewer than sixteen
    /// bytes left (`len - 16 < at < len`) are special, from two 8-byte loads
    /// (at `at` and `len - 8`, overlapping), as bits from `at` up.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn short_run_mask(bytes: &[u8], at: usize) -> u32 {
        use core::arch::wasm32::u64x2;
        let len = bytes.len();
        debug_assert!(len >= 8 && at < len && len - at < 16);
        let word = |from: usize| u64::from_le_bytes(bytes[from..from + 8].try_into().expect("8 bytes"));
        let (first, last) = if len - at >= 8 { (word(at), word(len - 8)) } else { (0x2020_2020_2020_2020, word(len - 8)) };
        let mask = special_mask_of(u64x2(first, last));
        // Bits 0..8 are bytes `at..at + 8` (when loaded); bits 8..16 are
        // bytes `len - 8..len`, of which those below `at + 8` (or `at`)
        // repeat bytes already covered.
        let low = if len - at >= 8 { mask & 0xff } else { 0 };
        let covered = if len - at >= 8 { at + 8 } else { at };
        let high = (mask >> 8) >> (covered - (len - 8));
        low | (high << (covered - at))
    }

    /// [`special_mask`] of a vector already loaded.
    #[inline]
    #[target_feature(enable = "simd128")]
    fn special_mask_of(chunk: v128) -> u32 {
        let special = v128_or(
            v128_or(i8x16_eq(chunk, u8x16_splat(b'"')), i8x16_eq(chunk, u8x16_splat(b'\\'))),
            u8x16_lt(chunk, u8x16_splat(0x20)),
        );
        u32::from(u8x16_bitmask(special))
    }

    /// [`super::next_special`] past its first sixteen bytes.
    #[inline(never)]
    #[target_feature(enable = "simd128")]
    pub(super) fn next_special_from(bytes: &[u8], mut at: usize) -> usize {
        let len = bytes.len();
        while at + 16 <= len {
            let mask = special_mask(bytes, at);
            if mask != 0 {
                return at + mask.trailing_zeros() as usize;
            }
            at += 16;
        }
        if at >= len {
            return len;
        }
        if len >= 16 {
            // The last few bytes: one more load, of the text's last 16
            // bytes, with the ones before `at` (already scanned) masked off.
            let mask = special_mask(bytes, len - 16) >> (at - (len - 16));
            return if mask != 0 { at + mask.trailing_zeros() as usize } else { len };
        }
        if len >= 8 {
            let mask = short_run_mask(bytes, at);
            return if mask != 0 { at + mask.trailing_zeros() as usize } else { len };
        }
        super::next_special_words(bytes, at)
    }
}

/// See the WebAssembly version above.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn next_special(bytes: &[u8], at: usize) -> usize {
    next_special_words(bytes, at)
}

/// A word at a time; the last few bytes with one more word, the text's last
/// eight bytes, in which the bytes before `at` are replaced by a plain one
/// (they may be special: a caller resumes after an escape; and a special
/// byte could make the flags of the bytes above it unreliable).
#[inline(always)]
fn next_special_words(bytes: &[u8], mut at: usize) -> usize {
    let len = bytes.len();
    while let Some(chunk) = bytes.get(at..at + 8) {
        let flags = special_flags(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    if at >= len {
        return len;
    }
    if len >= 8 {
        let last = u64::from_le_bytes(bytes[len - 8..].try_into().expect("8 bytes"));
        let seen = 8 * (at - (len - 8)) as u32;
        let keep = u64::MAX << seen;
        let flags = special_flags((last & keep) | ((ONES * u64::from(b'a')) & !keep));
        return if flags != 0 { len - 8 + (flags.trailing_zeros() / 8) as usize } else { len };
    }
    while at < len && !is_special(bytes[at]) {
        at += 1;
    }
    at
}

/// Skips JSON whitespace. Text written by serde (the host's and the SDK's)
/// has none, so the first test usually ends it.
#[inline(always)]
fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && bytes[at] <= b' ' && matches!(bytes[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// Marks a [`string_end`] whose string has escapes.
const ESCAPED: usize = 1 << (usize::BITS - 1);
/// What the scanning functions answer for malformed text (never a valid
/// index: texts are far shorter than `usize::MAX / 2`).
const BAD: usize = usize::MAX;

/// A string's extent: `at` is just past its opening quote. Answers the index
/// of the closing quote, with [`ESCAPED`] set if the string contains escapes
/// (packed into one integer: in WebAssembly a tuple or an `Option` would be
/// returned through memory), or [`BAD`] if it is unterminated or holds a raw
/// control character (which JSON forbids).
#[inline(always)]
fn string_end(bytes: &[u8], mut at: usize) -> usize {
    let mut escaped = 0;
    loop {
        at = next_special(bytes, at);
        match bytes.get(at) {
            Some(b'"') => return at | escaped,
            // The escaped character is never a quote that ends the string;
            // `\uXXXX`'s hex digits are plain bytes the next scan passes over.
            Some(b'\\') => {
                escaped = ESCAPED;
                at += 2;
            }
            _ => return BAD,
        }
    }
}

/// A value's extent: `at` is its first byte. Answers the index just past it
/// (for a string, with [`ESCAPED`] set if it has escapes), or [`BAD`].
#[inline(always)]
fn value_end(bytes: &[u8], at: usize) -> usize {
    match bytes.get(at) {
        Some(b'"') => match string_end(bytes, at + 1) {
            BAD => BAD,
            end => end + 1,
        },
        Some(b'{' | b'[') => nested_end(bytes, at),
        Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            let mut end = at + 1;
            while end < bytes.len() && !matches!(bytes[end], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                end += 1;
            }
            end
        }
        _ => BAD,
    }
}

/// An object's or array's extent, by counting brackets outside strings.
/// (Out of line: the values stages look for are mostly scalars.)
#[inline(never)]
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn nested_end(bytes: &[u8], at: usize) -> usize {
    let mut depth = 0usize;
    let mut at = at;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => match string_end(bytes, at + 1) {
                BAD => return BAD,
                end => at = end & !ESCAPED,
            },
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
        at += 1;
    }
    BAD
}

/// One member's key, as it appears in the text (quotes included).
pub(crate) struct Key<'a> {
    quoted: &'a [u8],
    escaped: bool,
}

impl Key<'_> {
    /// Whether the key, unescaped, is `name`.
    #[inline(always)]
    pub(crate) fn is(&self, name: &str) -> bool {
        if self.escaped {
            return escaped_key_is(self.quoted, name);
        }
        // Lengths first: most keys differ there, and it spares a memcmp call.
        self.quoted.len() == name.len() + 2 && &self.quoted[1..self.quoted.len() - 1] == name.as_bytes()
    }
}

/// [`Key::is`] for a key with escapes (rare: decoded by serde_json).
#[cold]
#[inline(never)]
fn escaped_key_is(quoted: &[u8], name: &str) -> bool {
    serde_json::from_slice::<Cow<'_, str>>(quoted).is_ok_and(|key| key == name)
}

/// A member's value, as it appears in the text.
#[derive(Clone, Copy)]
pub(crate) struct Raw<'a> {
    /// The value's JSON text.
    pub(crate) text: &'a str,
    /// For a string: whether it has escapes (known from the scan that found it).
    escaped: bool,
}

impl<'a> Raw<'a> {
    /// The string this value holds: borrowed from the text when it has no
    /// escapes (the usual case). `None` when it is not a string.
    pub(crate) fn as_str(self) -> Option<Cow<'a, str>> {
        let text = self.text;
        if !text.starts_with('"') {
            return None;
        }
        if self.escaped {
            serde_json::from_str::<String>(text).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&text[1..text.len() - 1]))
        }
    }
}

/// Where a walk over an object's members stopped.
pub(crate) enum Walk {
    /// The visitor asked to stop.
    Stopped,
    /// The object ended: `close` is the index of its `}`, `end` the index
    /// after it, and `empty` whether it had no members.
    Ended { close: usize, end: usize, empty: bool },
}

/// Calls `visit` with each member of the object `text` starts with (after
/// whitespace) until `visit` answers `false`: the member's key, the byte
/// range of its value in `text`, and (for a string value) whether it has
/// escapes. `None` when `text` is not an object.
#[inline(always)]
pub(crate) fn walk_object<'a>(text: &'a str, mut visit: impl FnMut(&Key<'a>, Range<usize>, bool) -> bool) -> Option<Walk> {
    let bytes = text.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_whitespace(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return Some(Walk::Ended { close: at, end: at + 1, empty: true });
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let key_end = match string_end(bytes, at + 1) {
            BAD => return None,
            end => end,
        };
        let close_quote = key_end & !ESCAPED;
        let key = Key { quoted: &bytes[at..close_quote + 1], escaped: key_end & ESCAPED != 0 };
        at = skip_whitespace(bytes, close_quote + 1);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_whitespace(bytes, at + 1);
        let value_end = match value_end(bytes, value_start) {
            BAD => return None,
            end => end,
        };
        let end = value_end & !ESCAPED;
        if !visit(&key, value_start..end, value_end & ESCAPED != 0) {
            return Some(Walk::Stopped);
        }
        at = skip_whitespace(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_whitespace(bytes, at + 1),
            Some(b'}') => return Some(Walk::Ended { close: at, end: at + 1, empty: false }),
            _ => return None,
        }
    }
}

/// Where a member's value is, if it was found: its byte range in the text,
/// and (for a string) whether it has escapes.
pub(crate) type Found = Option<(Range<usize>, bool)>;

/// Where [`find_members`] found what it looked for.
pub(crate) enum Members {
    /// Every key was found.
    AllFound,
    /// The object ends (its `}` at `close`) without the keys not found.
    /// `empty`: it has no members.
    Ended { close: usize, empty: bool },
}

/// Finds the first top-level member named each of `keys` in the JSON
/// object `text`: `found[i]` gets the byte range of the value of `keys[i]`,
/// and whether it is a string with escapes. Like a map, a member goes only
/// to the first of equal keys. `found` must be as long as `keys`. `None`
/// when `text` is not a well-formed object.
///
/// In WebAssembly it first searches for the quoted keys ([`flat::find`]),
/// which is several times cheaper than walking the members; where that
/// cannot tell, and natively, it walks them.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
pub(crate) fn find_members(text: &str, keys: &[&str], found: &mut [Found]) -> Option<Members> {
    if let [key] = keys {
        if let Some(value) = first_member_named(text, key) {
            found[0] = Some(value);
            return Some(Members::AllFound);
        }
    }
    #[cfg(target_arch = "wasm32")]
    match flat::find(text, keys, found) {
        flat::Flat::AllFound => return Some(Members::AllFound),
        flat::Flat::Ended { close, empty } => return Some(Members::Ended { close, empty }),
        flat::Flat::Unknown => found.fill(None),
    }
    let mut missing = keys.len();
    let walk = walk_object(text, |key, value, escaped| {
        if let Some(i) = keys.iter().position(|name| key.is(name)) {
            if found[i].is_none() {
                found[i] = Some((value, escaped));
                missing -= 1;
            }
        }
        missing > 0
    })?;
    match walk {
        Walk::Stopped => Some(Members::AllFound),
        Walk::Ended { close, end, empty } => text[end..].trim_start().is_empty().then_some(Members::Ended { close, empty }),
    }
}

/// The value of the first member of the object `text` starts with, if that
/// member is named `key` (written as it is, without escapes): a lookup that
/// often succeeds (the first field of an event) at a fraction of the cost of
/// setting up a search.
#[inline(always)]
fn first_member_named(text: &str, key: &str) -> Found {
    let bytes = text.as_bytes();
    let open = skip_whitespace(bytes, 0);
    if bytes.get(open) != Some(&b'{') {
        return None;
    }
    let quote = skip_whitespace(bytes, open + 1);
    let name = bytes.get(quote + 1..)?;
    // The first letter before the whole name (a call).
    if bytes[quote] != b'"' || name.first() != key.as_bytes().first() {
        return None;
    }
    if !name.starts_with(key.as_bytes()) || name.get(key.len()) != Some(&b'"') || key.bytes().any(is_special) {
        return None;
    }
    let colon = skip_whitespace(bytes, quote + key.len() + 2);
    if bytes.get(colon) != Some(&b':') {
        return None;
    }
    let start = skip_whitespace(bytes, colon + 1);
    match value_end(bytes, start) {
        BAD => None,
        end => Some((start..end & !ESCAPED, end & ESCAPED != 0)),
    }
}

/// The value of the first member named `key` of the object `text` starts
/// with. The search stops at that member.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
pub(crate) fn member<'a>(text: &'a str, key: &str) -> Option<Raw<'a>> {
    let mut found = [None];
    find_members(text, &[key], &mut found)?;
    let (range, escaped) = found[0].take()?;
    Some(Raw { text: &text[range], escaped })
}

/// Appends `value` as a JSON string, escaped exactly as `serde_json` does
/// (so text the SDK splices reads the same as text serde_json would write):
/// `\"`, `\\`, the short escapes `\b \t \n \f \r`, other control characters
/// as `\u00xx`; nothing else (not `/`, not non-ASCII).
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
pub fn write_str(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let mut at = next_special(bytes, 0);
    out.reserve(bytes.len() + 2);
    out.push('"');
    if at == bytes.len() {
        // The usual case: nothing to escape.
        out.push_str(value);
        out.push('"');
        return;
    }
    let mut start = 0;
    loop {
        out.push_str(&value[start..at]);
        let Some(&byte) = bytes.get(at) else { break };
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0c => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
        start = at + 1;
        at = next_special(bytes, start);
    }
    out.push('"');
}

/// [`write_str`] for a key: keys are short and rarely need escaping, and a
/// byte loop over a few bytes is cheaper than setting up the scan.
pub(crate) fn write_key(out: &mut String, key: &str) {
    if key.bytes().any(is_special) {
        write_str(out, key);
    } else {
        out.reserve(key.len() + 2);
        out.push('"');
        out.push_str(key);
        out.push('"');
    }
}

/// Appends `value` as JSON text, byte for byte what `serde_json::to_string`
/// writes, without its intermediate `String` per value.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::String(s) => write_str(out, s),
        Value::Number(n) => out.push_str(&serde_json::to_string(n).expect("a JSON number serializes")),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// JSON text a stage wrote itself, for [`Event::set_fields`]: the text is
/// spliced into `data` as it is, with no `Value` built, kept or serialized.
///
/// Valid JSON by construction (the constructors write it), so the SDK never
/// hands the host a broken event.
///
/// ```
/// use sluice_sdk::{Event, RawJson};
///
/// let mut event = Event::from_parts("a".into(), "hit".into(), "".into(), 0, r#"{"n":1}"#.into());
/// let query = RawJson::string_object([("q", "shoes"), ("page", "2")]);
/// event.set_fields([("host", RawJson::string("example.com")), ("query", query)]);
/// assert_eq!(event.data_json(), r#"{"n":1,"host":"example.com","query":{"q":"shoes","page":"2"}}"#);
/// ```
///
/// [`Event::set_fields`]: crate::Event::set_fields
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawJson(String);

impl RawJson {
    /// `text` as a JSON string: quoted, and escaped as serde_json escapes.
    pub fn string(text: &str) -> RawJson {
        let mut out = String::with_capacity(text.len() + 2);
        write_str(&mut out, text);
        RawJson(out)
    }

    /// A JSON object of string members, in the order given. Keys are
    /// written as given, so pass each once (a map's semantics, sorted keys
    /// and the last value of a repeated key, are the caller's to choose).
    pub fn string_object<K: AsRef<str>, V: AsRef<str>>(members: impl IntoIterator<Item = (K, V)>) -> RawJson {
        let mut out = String::with_capacity(64);
        out.push('{');
        for (i, (key, value)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, key.as_ref());
            out.push(':');
            write_str(&mut out, value.as_ref());
        }
        out.push('}');
        RawJson(out)
    }

    /// Any value, written as `serde_json::to_string` writes it.
    pub fn value(value: &Value) -> RawJson {
        let mut out = String::new();
        write_value(&mut out, value);
        RawJson(out)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<RawJson> for String {
    fn from(json: RawJson) -> String {
        json.0
    }
}

impl std::fmt::Display for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value [`Event::set_fields`] can write into `data`: a [`Value`] (or a
/// reference to one), or [`RawJson`]. Sealed: the SDK relies on the text
/// every implementation writes being valid JSON.
///
/// [`Event::set_fields`]: crate::Event::set_fields
pub trait FieldValue: sealed::Sealed {
    /// Appends the value's JSON text to `out`.
    #[doc(hidden)]
    fn write_json(&self, out: &mut String);
    /// About how many bytes [`FieldValue::write_json`] appends (to size the
    /// event's new text once).
    #[doc(hidden)]
    fn json_len_hint(&self) -> usize;
    /// The value itself, for an event whose `data` is already parsed.
    #[doc(hidden)]
    fn into_value(self) -> Value;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for serde_json::Value {}
    impl Sealed for &serde_json::Value {}
    impl Sealed for super::RawJson {}
}

impl FieldValue for Value {
    fn write_json(&self, out: &mut String) {
        write_value(out, self);
    }
    fn json_len_hint(&self) -> usize {
        (&self).json_len_hint()
    }
    fn into_value(self) -> Value {
        self
    }
}

impl FieldValue for &Value {
    fn write_json(&self, out: &mut String) {
        write_value(out, self);
    }
    fn json_len_hint(&self) -> usize {
        match self {
            Value::String(s) => s.len() + 2,
            _ => 16,
        }
    }
    fn into_value(self) -> Value {
        self.clone()
    }
}

impl FieldValue for RawJson {
    fn write_json(&self, out: &mut String) {
        out.push_str(&self.0);
    }
    fn json_len_hint(&self) -> usize {
        self.0.len()
    }
    fn into_value(self) -> Value {
        serde_json::from_str(&self.0).expect("RawJson holds valid JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_special_bytes_across_word_boundaries() {
        for len in 0..40 {
            for pos in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f] {
                    let mut text = vec![b'a'; len];
                    text[pos] = special;
                    // Bytes above a true hit may look like hits to the word test.
                    for after in pos + 1..len {
                        text[after] = [0x21, 0x5b, 0x5d, 0x80, 0xff][after % 5];
                    }
                    assert_eq!(next_special(&text, 0), pos, "{text:?}");
                }
            }
            assert_eq!(next_special(&vec![0x7f; len], 0), len);
            // Resuming just past a special byte (as after an escape): the
            // byte after it is not special.
            for pos in 0..len.saturating_sub(1) {
                let mut text = vec![b' '; len];
                text[pos] = b'\t';
                assert_eq!(next_special(&text, pos + 1), len, "{text:?} from {}", pos + 1);
            }
            assert_eq!(next_special("é→😀 plain".as_bytes(), 0), "é→😀 plain".len());
        }
    }

    #[test]
    fn walks_members_and_finds_values() {
        let text = r#" { "a" : 1 , "b\"c":"x\\\"y", "n": {"d": [1, {"e": "]}"}], "f": null}, "t":true,"u\u0072l":"s" } "#;
        let mut keys = Vec::new();
        let walk = walk_object(text, |key, value, _| {
            keys.push((String::from_utf8(key.quoted.to_vec()).unwrap(), text[value].to_string()));
            true
        });
        assert!(matches!(walk, Some(Walk::Ended { empty: false, .. })));
        assert_eq!(
            keys,
            [
                (r#""a""#.into(), "1".into()),
                (r#""b\"c""#.into(), r#""x\\\"y""#.into()),
                (r#""n""#.into(), r#"{"d": [1, {"e": "]}"}], "f": null}"#.into()),
                (r#""t""#.into(), "true".into()),
                (r#""u\u0072l""#.into(), r#""s""#.into()),
            ]
        );
        assert_eq!(member(text, "url").map(|raw| raw.text), Some(r#""s""#));
        assert_eq!(member(text, "b\"c").and_then(Raw::as_str).as_deref(), Some("x\\\"y"));
        assert_eq!(member(text, "a").and_then(Raw::as_str), None);
        assert!(member(text, "nope").is_none());
        // The first member, found without a search, and its near misses.
        let value = |text, key| member(text, key).map(|raw| raw.text);
        assert_eq!(value(r#"{"a":1}"#, "a"), Some("1"));
        assert_eq!(value(r#" { "a" : "x" , "b":2}"#, "a"), Some(r#""x""#));
        assert_eq!(value(r#"{"ab":1,"a":2}"#, "a"), Some("2"));
        assert_eq!(value(r#"{"a":1,"a":2}"#, "a"), Some("1"));
        assert_eq!(value(r#"{"\u0061":1,"a":2}"#, "a"), Some("1"));
        assert_eq!(value(r#"{"a""#, "a"), None);
        assert_eq!(value(r#"{"":1}"#, ""), Some("1"));
        assert!(matches!(walk_object("{ }", |_, _, _| true), Some(Walk::Ended { close: 2, end: 3, empty: true })));
        for bad in ["", "[1]", "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,}", "{\"a\":\"x", "{\"a\":\"\u{1}\"}", "{a:1}"] {
            assert!(matches!(walk_object(bad, |_, _, _| true), None | Some(Walk::Stopped)), "{bad}");
        }
    }

    #[test]
    fn reads_strings() {
        let string = |text| member(text, "s").and_then(Raw::as_str);
        assert_eq!(string(r#"{"s":"plain"}"#), Some(Cow::Borrowed("plain")));
        assert_eq!(string(r#"{"s":"a\nb\u00e9"}"#).as_deref(), Some("a\nbé"));
        assert_eq!(string(r#"{"s":12}"#), None);
        assert_eq!(string(r#"{"s":"unterminated}"#), None);
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let control: String = (0u8..0x20).map(char::from).collect();
        let values = [
            json!(null),
            json!(true),
            json!(-12),
            json!(u64::MAX),
            json!(1.5e300),
            json!(0.1),
            json!("plain"),
            json!(format!("q\"b\\s/é😀\u{7f}{control}")),
            json!({"b": [1, "x", {"c": null}], "a": {}, "": []}),
        ];
        for value in values {
            let mut out = String::new();
            write_value(&mut out, &value);
            assert_eq!(out, serde_json::to_string(&value).unwrap());
        }
    }
}
