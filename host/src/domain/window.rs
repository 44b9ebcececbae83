//! Window state as every layer passes it: what the stores keep for
//! windowed aggregations, backend-neutral.
//!
//! Workers turn a batch's outputs into [`PaneDelta`]s (one per window, pane
//! and group, however many events it sums) that `complete_windowed` applies
//! together with the entry's acknowledgement. The closer (`crate::window`)
//! reads panes back, merges them into window results and commits what it
//! emitted in one [`CloseCommit`]. Group keys are the group value's JSON text
//! (`null` for an ungrouped window).

use serde::{Deserialize, Serialize};

/// No watermark yet (no event seen).
pub const NO_WATERMARK: i64 = i64::MIN;

/// Aggregates per window: the spec refuses more, and the stores treat a
/// stored row claiming more as corrupt (so a bad row cannot make them
/// allocate without bound).
pub const MAX_AGGREGATES: usize = 16;

/// The mergeable partial aggregate of one (window, pane, group).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaneAgg {
    /// Events in the row.
    pub count: u64,
    /// One per aggregate of the window spec, by index (`count` without a
    /// field has an unused default entry).
    pub fields: Vec<FieldAgg>,
}

/// Per-aggregate partial state. `missing` counts events that lacked the
/// field (or, for numeric ops, had a non-number); for an aggregate with a
/// field, `n + missing` is the row's count (the Redis store keeps only
/// `missing` and derives `n`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldAgg {
    /// Values taken (numbers for numeric ops, present values otherwise).
    pub n: u64,
    /// Sum of the numbers taken (`sum`, `avg`).
    pub sum: f64,
    /// Smallest number taken, if any (`min`).
    pub min: Option<f64>,
    /// Largest number taken, if any (`max`).
    pub max: Option<f64>,
    /// Events that lacked the field (see the type's doc).
    pub missing: u64,
}

impl FieldAgg {
    /// Folds `other` (the same aggregate of another batch or pane) into this one.
    pub fn merge(&mut self, other: &FieldAgg) {
        self.n += other.n;
        self.sum += other.sum;
        self.missing += other.missing;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

impl PaneAgg {
    /// An empty aggregate with one [`FieldAgg`] per aggregate of the window.
    pub fn new(aggregates: usize) -> Self {
        PaneAgg { count: 0, fields: vec![FieldAgg::default(); aggregates] }
    }

    /// The first aggregate holding a number that is not finite, as (index,
    /// `"sum"` | `"min"` | `"max"`): stores refuse to keep one (it would
    /// stall the closer or fail a Redis script), so they check with this
    /// before writing.
    pub fn non_finite(&self) -> Option<(usize, &'static str)> {
        self.fields.iter().enumerate().find_map(|(i, f)| {
            if !f.sum.is_finite() {
                Some((i, "sum"))
            } else if f.min.is_some_and(|v| !v.is_finite()) {
                Some((i, "min"))
            } else if f.max.is_some_and(|v| !v.is_finite()) {
                Some((i, "max"))
            } else {
                None
            }
        })
    }

    /// Folds `other` into this one (counts add, fields merge by index).
    pub fn merge(&mut self, other: &PaneAgg) {
        self.count += other.count;
        if self.fields.len() < other.fields.len() {
            self.fields.resize(other.fields.len(), FieldAgg::default());
        }
        for (mine, theirs) in self.fields.iter_mut().zip(&other.fields) {
            mine.merge(theirs);
        }
    }
}

/// One batch's contribution to one (window, pane, group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaneDelta {
    /// The window's name in the spec.
    pub window: String,
    /// The pane's start (sliding/tumbling: aligned to the slide; session: the event time).
    pub pane: i64,
    /// The group key (the group value's JSON text; `null` ungrouped).
    pub group: String,
    /// What to add to the row.
    pub agg: PaneAgg,
    /// Per aggregate index: the values to add to its HyperLogLog (empty for
    /// aggregates that are not `count_distinct`).
    pub distinct: Vec<Vec<String>>,
    /// From this watermark on, the update lands in an already closed window:
    /// if the stored watermark is there when it is applied, the store adds a
    /// [`DirtyMark`] for it (so the closer re-emits). `None`: never.
    #[serde(default)]
    pub dirty_at: Option<i64>,
}

/// "An update landed in an already closed window": the closer re-emits the
/// closed windows covering `pane` (sessions: the group's closed sessions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DirtyMark {
    /// The window's name in the spec.
    pub window: String,
    /// The updated pane's start.
    pub pane: i64,
    /// The updated group key.
    pub group: String,
}

/// A pipeline's event-time clock, as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowClock {
    /// Windows ending at or before it are closed ([`NO_WATERMARK`]: none yet).
    /// Moved only by the closer.
    pub watermark: i64,
    /// The newest event time applied to any window ([`NO_WATERMARK`]: none).
    pub max_event_ts: i64,
    /// Wall-clock ms of the last apply that carried events (0: never).
    pub last_event_at: i64,
    /// While in the future, a closer is working: window applies answer stale.
    pub gate_until: i64,
}

impl Default for WindowClock {
    fn default() -> Self {
        WindowClock { watermark: NO_WATERMARK, max_event_ts: NO_WATERMARK, last_event_at: 0, gate_until: 0 }
    }
}

/// A close gate taken by `begin_close`: the clock as it was when taken, and
/// the lease's fencing token. Every `begin_close` hands out a greater token
/// than the one before, so a pass that outlived its lease (someone else
/// took the gate since) holds a token the store no longer has and cannot
/// commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseLease {
    /// The clock when the gate was taken (its `gate_until` is this lease's end).
    pub clock: WindowClock,
    /// The fencing token to hand back in [`CloseCommit::token`].
    pub token: u64,
}

/// What `finish_close` did with a [`CloseCommit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum CloseOutcome {
    /// Applied, and the gate is open again.
    Committed,
    /// Nothing written: the commit's lease is not the live one (it ran out
    /// and was taken again, or a window apply revoked it, or it committed
    /// already: a lease commits once). The pass's
    /// decisions were taken on a state that may have changed; the current
    /// holder (or the next pass) decides again.
    Fenced,
}

/// One (pane, group) row read back from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct PaneRow {
    /// The pane's start.
    pub pane: i64,
    /// The group key.
    pub group: String,
    /// The row's partial aggregate.
    pub agg: PaneAgg,
}

/// "How many distinct values did aggregate `agg` see for `group` over these
/// panes?" (a HyperLogLog union).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinctQuery {
    /// The aggregate's index in the window spec.
    pub agg: usize,
    /// The group key.
    pub group: String,
    /// The pane starts to union.
    pub panes: Vec<i64>,
}

/// A window result record as stored and emitted: `json` is the API's result
/// object (`group`, `start`, `end`, `closed`, `count`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRecord {
    /// The window's name in the spec.
    pub window: String,
    /// The window instance's start, ms.
    pub start: i64,
    /// The group key.
    pub group: String,
    /// The API's result object, as text.
    pub json: String,
}

/// Pane state to delete: a whole pane (`group: None`) or one group's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneRef {
    /// The window's name in the spec.
    pub window: String,
    /// The pane's start.
    pub pane: i64,
    /// One group's row, or (`None`) the whole pane.
    pub group: Option<String>,
}

/// Everything one closer pass decided, applied atomically; it also sets the
/// watermark and opens the gate again. Applied only while `token` is the
/// store's current lease (else nothing is written: [`CloseOutcome::Fenced`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CloseCommit {
    /// The fencing token of the lease the pass holds ([`CloseLease::token`]).
    pub token: u64,
    /// The new watermark. The store never moves the watermark backwards: a
    /// lower one leaves the stored one, except that a stored watermark past
    /// `horizon` is lowered to `horizon` (and no further).
    pub watermark: i64,
    /// The server's clock plus the spec's `max_future_ms` when the pass was
    /// planned: the only bound a stored watermark is brought back to
    /// (`None`: the watermark only moves forward).
    pub horizon: Option<i64>,
    /// Appended to the window's results stream (closed windows, re-emits).
    pub emit: Vec<WindowRecord>,
    /// Stored as the final result of their window (queries read these once
    /// the window's panes are gone).
    pub finals: Vec<WindowRecord>,
    /// Pane state no window needs any more.
    pub drop_panes: Vec<PaneRef>,
    /// Dirty marks handled by this pass.
    pub dirty_done: Vec<DirtyMark>,
    /// Per window: results (final and emitted) older than this are removed.
    pub expire: Vec<(String, i64)>,
}

impl CloseCommit {
    /// The watermark to store on top of `stored` (see
    /// [`watermark`](Self::watermark)): never backwards, except down to the
    /// horizon from past it.
    pub fn watermark_over(&self, stored: i64) -> i64 {
        match self.horizon {
            _ if self.watermark >= stored => self.watermark,
            Some(horizon) if stored > horizon => self.watermark.max(horizon),
            _ => stored,
        }
    }
}

/// A spike alert (API.md `GET .../alerts`); `json` is the API object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    /// The window whose result spiked.
    pub window: String,
    /// That window instance's start, ms.
    pub start: i64,
    /// The group key.
    pub group: String,
    /// The API's alert object, as text.
    pub json: String,
}
