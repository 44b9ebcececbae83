//! What the stores report about their own data.

use super::InternalEvent;

/// A stored pane row could not be read (not a number where one belongs, a
/// sum that is not finite): it is read as missing, so one bad row cannot
/// make every later read of the window fail.
pub struct BadPaneRowSkipped<'a> {
    pub window: &'a str,
    pub pane: i64,
    pub group: &'a str,
    pub reason: &'a str,
}

impl InternalEvent for BadPaneRowSkipped<'_> {
    fn emit(self) {
        tracing::error!(
            target: "sluice::store",
            window = self.window,
            pane = self.pane,
            group = self.group,
            "stored pane row skipped (read as missing): {}",
            self.reason
        );
        metrics::counter!("sluice_store_bad_pane_rows_total").increment(1);
    }
}
