//! Event time: watermarks and windows.
//!
//! Time is milliseconds since the Unix epoch in UTC (`TIMESTAMP(3)`); window
//! boundaries align to the epoch, as Flink's do with the UTC session zone.
//! A watermark `W` says no more rows with a time at or before `W` are
//! expected; a window `[start, end)` fires once `W >= end - 1`. The end of
//! an input is the watermark [`END_OF_TIME`], so "the batch is over" and "the
//! watermark passed every window" are one idea, not two code paths.

pub mod gate;
pub mod rowtime;
pub mod watermark;
pub mod window;

pub use gate::EventTimeGate;
pub use rowtime::RowtimeWatermark;
pub use watermark::{InputWatermarks, SplitWatermarks};
pub use window::{WindowColumn, WindowKind};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The watermark before any input has been seen.
pub const BEFORE_TIME: Millis = i64::MIN;

/// The watermark of an input that has ended: every window may fire.
pub const END_OF_TIME: Millis = i64::MAX;

/// The wall clock, in milliseconds since the epoch: processing time.
pub fn wall_clock() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
