//! Per-event checks beyond the event's shape (API.md v1.1): how deep `data`
//! nests and how far ahead of the server's clock an event's time may be.

/// Deepest `data` accepted: `{}` is 1, `{"a":{}}` is 2.
pub const MAX_DATA_DEPTH: usize = 64;

/// Whether the JSON text `data` nests objects and arrays deeper than `max`.
/// Most events have fewer brackets in all than `max`, which a counting pass
/// (vectorised by the compiler) settles without following strings.
pub fn nests_deeper_than(data: &str, max: usize) -> bool {
    let bytes = data.as_bytes();
    if bytes.iter().filter(|&&b| b == b'{' || b == b'[').count() <= max {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The per-event refusal for `data` nested deeper than [`MAX_DATA_DEPTH`].
pub fn too_deep() -> String {
    format!("`data` is nested deeper than {MAX_DATA_DEPTH} levels")
}

/// The per-event refusal for an event time more than `max_future_ms` ahead.
pub fn too_far_ahead(timestamp: i64, now_ms: i64, max_future_ms: u64) -> String {
    format!(
        "`timestamp` {timestamp} is {} ms ahead of the server's clock ({now_ms}); the pipeline's max_future_ms allows {max_future_ms}",
        timestamp.saturating_sub(now_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn counts_nesting_outside_strings() {
        assert!(!nests_deeper_than("{}", 1));
        assert!(nests_deeper_than(r#"{"a":[]}"#, 1));
        assert!(!nests_deeper_than(&nested(64), MAX_DATA_DEPTH));
        assert!(nests_deeper_than(&nested(65), MAX_DATA_DEPTH));
        assert!(nests_deeper_than(&nested(200), MAX_DATA_DEPTH));
        let brackets_in_strings = format!(r#"{{"s":"{}\"{}","t":[1,2]}}"#, "[{".repeat(100), "{".repeat(100));
        assert!(!nests_deeper_than(&brackets_in_strings, 2), "brackets inside strings (and after an escaped quote) do not nest");
        let siblings = format!("[{}]", vec!["[]"; 100].join(","));
        assert!(!nests_deeper_than(&siblings, 2), "many brackets side by side are not deep");
    }
}
