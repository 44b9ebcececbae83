//! What a stage may write with `host.log`: a bounded number of lines and
//! bytes per call, so a plugin cannot flood the host's log. Lines past the
//! caps are dropped and counted (reported once per call).

/// Bytes of a line's message kept; the rest is cut and marked with `…`.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;
/// Bytes of a line's message and fields together (fields are cut to fit).
pub(crate) const MAX_LINE_BYTES: usize = 8192;
/// Bytes of messages and fields one call may log; a line that would go past
/// it is dropped.
pub(crate) const MAX_CALL_BYTES: usize = 64 * 1024;
/// Lines one call may log; the ones after are dropped.
pub(crate) const MAX_CALL_LINES: u32 = 100;

/// What a call has logged so far.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct LogBudget {
    pub(crate) lines: u32,
    pub(crate) bytes: usize,
    /// Lines dropped for going over a cap.
    pub(crate) dropped: u32,
}

impl LogBudget {
    /// The line to log, as `(message, fields)` within the caps, or `None`
    /// when it is dropped (and counted).
    pub(crate) fn admit(&mut self, message: String, fields: &[(String, String)]) -> Option<(String, String)> {
        self.lines += 1;
        if self.lines > MAX_CALL_LINES || self.bytes >= MAX_CALL_BYTES {
            self.dropped += 1;
            return None;
        }
        let mut message = message;
        cut(&mut message, MAX_MESSAGE_BYTES);
        let mut joined = String::new();
        let room = MAX_LINE_BYTES.saturating_sub(message.len());
        for (key, value) in fields {
            if joined.len() > room {
                break;
            }
            if !joined.is_empty() {
                joined.push(' ');
            }
            // Never copies more than the room left (plus one char to cut at).
            for part in [key.as_str(), "=", value.as_str()] {
                let left = (room + 4).saturating_sub(joined.len());
                joined.push_str(&part[..floor_boundary(part, left)]);
            }
        }
        cut(&mut joined, room);
        let size = message.len() + joined.len();
        if self.bytes + size > MAX_CALL_BYTES {
            self.dropped += 1;
            return None;
        }
        self.bytes += size;
        Some((message, joined))
    }
}

/// The largest char boundary of `text` at or below `at`.
fn floor_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0)
}

/// Cuts `text` to at most `max` bytes (on a char boundary), marking the cut
/// with `…` (which adds 3 bytes).
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        text.truncate(floor_boundary(text, max));
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_small_line_is_kept_whole() {
        let mut budget = LogBudget::default();
        let line = budget.admit("hello".into(), &fields(&[("a", "1"), ("b", "two")]));
        assert_eq!(line, Some(("hello".to_string(), "a=1 b=two".to_string())));
        assert_eq!(budget, LogBudget { lines: 1, bytes: 14, dropped: 0 });
    }

    #[test]
    fn message_and_fields_are_cut_to_the_line_cap() {
        let mut budget = LogBudget::default();
        let huge = "é".repeat(MAX_LINE_BYTES);
        let (message, joined) = budget.admit(huge.clone(), &fields(&[("k", &huge), ("other", "x")])).unwrap();
        assert!(message.len() <= MAX_MESSAGE_BYTES + 3 && message.ends_with('…'), "{}", message.len());
        assert!(message.len() + joined.len() <= MAX_LINE_BYTES + 3, "{} + {}", message.len(), joined.len());
        assert!(joined.starts_with("k=é") && joined.ends_with('…'));
        assert!(!joined.contains("other"), "fields after the cap are left out");
    }

    #[test]
    fn many_fields_cannot_pass_the_line_cap() {
        let mut budget = LogBudget::default();
        let many: Vec<(String, String)> = (0..100_000).map(|i| (format!("k{i}"), "v".repeat(10))).collect();
        let (message, joined) = budget.admit("m".into(), &many).unwrap();
        assert!(message.len() + joined.len() <= MAX_LINE_BYTES + 3);
    }

    #[test]
    fn lines_past_the_call_caps_are_dropped_and_counted() {
        let mut budget = LogBudget::default();
        let big = "x".repeat(MAX_LINE_BYTES);
        let mut kept = 0;
        for _ in 0..20 {
            if budget.admit(big.clone(), &fields(&[("f", &big)])).is_some() {
                kept += 1;
            }
        }
        assert!(budget.bytes <= MAX_CALL_BYTES, "{}", budget.bytes);
        assert_eq!(kept, MAX_CALL_BYTES / (MAX_LINE_BYTES + 3));
        assert_eq!(budget.dropped as usize, 20 - kept);

        let mut budget = LogBudget::default();
        let kept = (0..150).filter(|_| budget.admit("short".into(), &[]).is_some()).count();
        assert_eq!(kept, MAX_CALL_LINES as usize);
        assert_eq!(budget.dropped, 50);
    }
}
