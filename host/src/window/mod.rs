//! Windowed aggregations over event time (DESIGN.md "Windows").
//!
//! - [`spec`]: the `windows` of a pipeline spec, checked.
//! - [`assign`]: a batch's outputs → pane deltas, dirty marks and late events
//!   (the worker applies them with the batch's acknowledgement).
//! - [`compute`]: panes → window results (tumbling, sliding, session).
//! - [`closer`]: moves the watermark, emits closed windows, stores finals.
//! - [`query`]: what `GET .../windows/{window}` answers.
//! - [`latest`]: `?latest=true`, the newest window per group.
//! - [`spike`]: spike alerts, checked while a window fills.
//!
//! Semantics, in one place:
//! - A sliding window is stored as panes of one slide; a tumbling window is
//!   a sliding window whose slide is its size; a session window stores each
//!   event time of a group as its own point and derives sessions from them
//!   (a gap of `gap_ms` or more between two points ends a session).
//! - The watermark is the newest event time applied (it also advances with
//!   processing time once the pipeline has been idle for the idle timeout).
//!   A window `[start, end)` is *closed* once the watermark reaches `end`
//!   (one result record is emitted), and *final* once it reaches
//!   `end + allowed_lateness_ms` (its result is stored, its panes dropped).
//! - An event counts in every window covering it that is not final when its
//!   batch is applied. An event with no such window (for some window
//!   definition) goes to the DLQ as `late`, naming the window it missed.
//!   An update to a closed, not yet final window re-emits it.
//!
//! May use: `domain`, `store` (reading and committing window state through
//! its `WindowState` capability). The engine runs the closer and applies
//! the deltas; the API queries through the engine.

pub mod assign;
pub mod latest;
pub mod closer;
pub mod compute;
pub mod query;
pub mod spec;
pub mod spike;

pub use assign::{Assignment, LateEvent, WindowSet};
pub use spec::{Shape, WindowSpec};
