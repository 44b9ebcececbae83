//! `bot-filter`: drops events whose `data.ua` contains a configured pattern,
//! case-insensitively. Config: `{"patterns": [...]}` (default bot, spider,
//! crawler). Events without `data.ua` pass.
//!
//! Every event of a pipeline goes through it, so the search is built for
//! WebAssembly: no lower-cased copy of each user agent, and in the guest the
//! candidate positions are found sixteen bytes at a time with SIMD.

use serde::Deserialize;
use sluice_sdk::{Context, Emit, Event, Stage, StageError};

pub struct BotFilter {
    /// Lower-cased patterns.
    patterns: Vec<String>,
    /// For each byte of a user agent, what the byte-wise scan makes of it:
    /// see [`BotFilter::matches_from`].
    bytes: [ByteClass; 256],
    /// The first two bytes of each ASCII pattern (the second `None` for a
    /// one-byte pattern), without repeats: where the SIMD scan looks.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    heads: Vec<(u8, Option<u8>)>,
}

/// What a user-agent byte means to the scan.
#[derive(Clone, Copy, PartialEq)]
enum ByteClass {
    /// No pattern starts with this letter (in either case).
    Plain,
    /// Some pattern may start here: compare.
    Candidate,
    /// Not ASCII: fall back to Unicode lower-casing.
    NonAscii,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    patterns: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { patterns: vec!["bot".into(), "spider".into(), "crawler".into()] }
    }
}

impl BotFilter {
    /// Whether `ua` contains a pattern, ignoring case: exactly what
    /// `ua.to_lowercase().contains(pattern)` answers for some pattern.
    ///
    /// User agents are ASCII in practice, and for ASCII text Unicode
    /// lower-casing is ASCII lower-casing, so the scan compares in place,
    /// ASCII-case-insensitively, wherever a pattern could start. At the first
    /// non-ASCII byte it falls back to lower-casing a copy and searching it.
    pub fn matches(&self, ua: &str) -> bool {
        #[cfg(target_arch = "wasm32")]
        return self.matches_simd(ua);
        #[cfg(not(target_arch = "wasm32"))]
        return self.matches_from(ua, 0);
    }

    /// [`BotFilter::matches`] one byte at a time, from byte `at` on (the
    /// bytes before it have no match and are ASCII).
    fn matches_from(&self, ua: &str, at: usize) -> bool {
        let bytes = ua.as_bytes();
        for at in at..bytes.len() {
            match self.bytes[usize::from(bytes[at])] {
                ByteClass::Plain => {}
                ByteClass::Candidate => {
                    if self.matches_at(bytes, at) {
                        return true;
                    }
                }
                ByteClass::NonAscii => return self.matches_unicode(ua),
            }
        }
        false
    }

    /// Whether a pattern starts at byte `at` of an ASCII user agent.
    fn matches_at(&self, bytes: &[u8], at: usize) -> bool {
        let rest = &bytes[at..];
        self.patterns.iter().any(|p| rest.get(..p.len()).is_some_and(|r| r.eq_ignore_ascii_case(p.as_bytes())))
    }

    /// The reference answer, for user agents that are not ASCII.
    #[cold]
    fn matches_unicode(&self, ua: &str) -> bool {
        let lower = ua.to_lowercase();
        self.patterns.iter().any(|p| lower.contains(p.as_str()))
    }

    /// [`BotFilter::matches`] sixteen positions at a time: each step
    /// lower-cases two overlapping 16-byte windows (at `i` and `i + 1`) and
    /// marks the positions where some pattern's first two bytes appear; only
    /// those are compared in full. The last positions go byte by byte.
    #[cfg(target_arch = "wasm32")]
    #[target_feature(enable = "simd128")]
    fn matches_simd(&self, ua: &str) -> bool {
        use core::arch::wasm32::{
            i8x16_eq, u8x16_bitmask, u8x16_lt, u8x16_splat, u8x16_sub, v128, v128_and, v128_any_true, v128_load, v128_or,
        };
        /// ASCII lower case of every byte.
        #[inline]
        #[target_feature(enable = "simd128")]
        fn lower(v: v128) -> v128 {
            let upper = u8x16_lt(u8x16_sub(v, u8x16_splat(b'A')), u8x16_splat(26));
            v128_or(v, v128_and(upper, u8x16_splat(0x20)))
        }
        let bytes = ua.as_bytes();
        let mut at = 0;
        while at + 17 <= bytes.len() {
            // SAFETY: `at + 17 <= bytes.len()`: both 16-byte loads are in
            // bounds; `v128_load` has no alignment requirement.
            let (raw, next) = unsafe {
                (v128_load(bytes.as_ptr().add(at).cast::<v128>()), v128_load(bytes.as_ptr().add(at + 1).cast::<v128>()))
            };
            if u8x16_bitmask(raw) != 0 {
                return self.matches_unicode(ua);
            }
            let (first, second) = (lower(raw), lower(next));
            let mut hits = u8x16_splat(0);
            for &(a, b) in &self.heads {
                let head = i8x16_eq(first, u8x16_splat(a));
                hits = v128_or(hits, match b {
                    Some(b) => v128_and(head, i8x16_eq(second, u8x16_splat(b))),
                    None => head,
                });
            }
            if v128_any_true(hits) {
                let mut mask = u8x16_bitmask(hits);
                while mask != 0 {
                    if self.matches_at(bytes, at + mask.trailing_zeros() as usize) {
                        return true;
                    }
                    mask &= mask - 1;
                }
            }
            at += 16;
        }
        self.matches_from(ua, at)
    }
}

impl Stage for BotFilter {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        if config.patterns.iter().any(|p| p.is_empty()) {
            return Err("patterns must not contain an empty string (it would match every user agent)".into());
        }
        let patterns: Vec<String> = config.patterns.iter().map(|p| p.to_lowercase()).collect();
        let mut bytes = [ByteClass::Plain; 256];
        bytes[0x80..].fill(ByteClass::NonAscii);
        // A pattern that is not ASCII once lower-cased never occurs in ASCII
        // text, so only ASCII patterns need looking for there.
        let mut heads = Vec::new();
        for pattern in patterns.iter().filter(|p| p.is_ascii()).map(|p| p.as_bytes()) {
            bytes[usize::from(pattern[0].to_ascii_lowercase())] = ByteClass::Candidate;
            bytes[usize::from(pattern[0].to_ascii_uppercase())] = ByteClass::Candidate;
            let head = (pattern[0], pattern.get(1).copied());
            if !heads.contains(&head) {
                heads.push(head);
            }
        }
        Ok(BotFilter { patterns, bytes, heads })
    }

    fn process(&self, event: &mut Event, _ctx: &Context) -> Result<Emit, StageError> {
        match event.get_str("data.ua") {
            Some(ua) if self.matches(&ua) => Ok(Emit::Drop),
            _ => Ok(Emit::Pass),
        }
    }
}

sluice_sdk::export_stage!(BotFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> BotFilter {
        BotFilter::init(Config { patterns: patterns.iter().map(|p| p.to_string()).collect() }).unwrap()
    }

    #[test]
    fn matches_as_lowercasing_and_contains_would() {
        let default = BotFilter::init(Config::default()).unwrap();
        let custom = filter(&["HeadlessChrome", "ÄPFEL", "\u{212a}x", "b"]);
        let agents = [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Baiduspider",
            "WebCRAWLER",
            "spide",
            "Mozilla headlesschrome/119",
            "äpfel ÄPFEL",
            "KX",
            "\u{212a}x",
            "İBOT",
            "",
            "bo",
            "0123456789abcdef0123456789ABCDEFbot",
            "0123456789abcdef0123456789ABCDEéspider",
            "0123456789abcdef0123456789ABCDEFbo",
            "0123456789abcdef0123456789ABCDEFb",
        ];
        for stage in [&default, &custom] {
            for ua in agents {
                let lower = ua.to_lowercase();
                let expected = stage.patterns.iter().any(|p| lower.contains(p.as_str()));
                assert_eq!(stage.matches(ua), expected, "{ua:?} with {:?}", stage.patterns);
            }
        }
    }
}
