//! Window assignment by slices.
//!
//! Every time window kind is cut into *slices* (panes) of equal length, and a
//! row is added to exactly one slice, never copied into each window it belongs
//! to. A window is the union of a run of consecutive slices:
//!
//! | kind | slice length | a window is |
//! |---|---|---|
//! | tumble(size) | size | one slice |
//! | hop(slide, size) | gcd(size, slide) | size / slice consecutive slices |
//! | cumulate(step, max) | step | the first k slices of its max-size period |
//!
//! Session windows depend on the data and are handled by their own operator.
//! `Global` is the one window of a non-windowed `GROUP BY`: it fires at the end
//! of input.

use super::Millis;

/// The window columns a window table-valued function adds to its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WindowColumn {
    Start,
    End,
    /// `window_end - 1 ms`: the rowtime of a window's output row.
    Time,
}

impl WindowColumn {
    pub const ALL: [WindowColumn; 3] = [Self::Start, Self::End, Self::Time];

    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "window_start",
            Self::End => "window_end",
            Self::Time => "window_time",
        }
    }

    pub fn value(self, start: Millis, end: Millis) -> Millis {
        match self {
            Self::Start => start,
            Self::End => end,
            Self::Time => end - 1,
        }
    }
}

/// The most slices one window may span: `size / gcd(size, slide)` for HOP,
/// `max_size / step` for CUMULATE.
///
/// A window merges the states of all its slices when it fires, and a row's
/// slice stays in state until the last window over it has fired, so per key
/// both the memory and the work of every firing grow with this count. An
/// unbounded count let a 7 ms slide over a day (86.4 million slices) grow
/// until the machine ran out of memory; 100,000 still admits a day sliding
/// by a second (86,400 slices) or an hour by 50 ms (72,000).
pub const MAX_SLICES_PER_WINDOW: Millis = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WindowKind {
    Tumble { size: Millis },
    Hop { size: Millis, slide: Millis },
    Cumulate { step: Millis, max_size: Millis },
    Session { gap: Millis },
    Global,
}

impl WindowKind {
    /// Checks the sizes a job gave; the message names the window function.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: Millis| {
            if v > 0 {
                Ok(())
            } else {
                Err(format!("{name} must be a positive interval, got {v} ms"))
            }
        };
        match *self {
            Self::Tumble { size } => positive("TUMBLE size", size),
            Self::Hop { size, slide } => {
                positive("HOP size", size)?;
                positive("HOP slide", slide)?;
                if size < slide {
                    return Err(format!(
                        "HOP size ({size} ms) must not be smaller than its slide ({slide} ms): rows between windows would belong to none"
                    ));
                }
                let pane = gcd(size, slide);
                bounded_slices(
                    &format!("HOP with slide {slide} ms and size {size} ms"),
                    size / pane,
                    pane,
                )
            }
            Self::Cumulate { step, max_size } => {
                positive("CUMULATE step", step)?;
                positive("CUMULATE max size", max_size)?;
                if max_size % step != 0 {
                    return Err(format!(
                        "CUMULATE max size ({max_size} ms) must be a whole multiple of its step ({step} ms)"
                    ));
                }
                bounded_slices(
                    &format!("CUMULATE with step {step} ms and max size {max_size} ms"),
                    max_size / step,
                    step,
                )
            }
            Self::Session { gap } => positive("SESSION gap", gap),
            Self::Global => Ok(()),
        }
    }

    /// The length of one slice, for the kinds that slice.
    pub fn slice_len(&self) -> Option<Millis> {
        match *self {
            Self::Tumble { size } => Some(size),
            Self::Hop { size, slide } => Some(gcd(size, slide)),
            Self::Cumulate { step, .. } => Some(step),
            Self::Session { .. } | Self::Global => None,
        }
    }

    /// The start of the slice that holds time `ts`.
    pub fn slice_start(&self, ts: Millis) -> Millis {
        match self.slice_len() {
            Some(len) => floor_to(ts, len),
            None => 0,
        }
    }

    /// The end of the last window that contains the slice starting at
    /// `slice`: once that window has fired, the slice is no longer needed and
    /// a row for it is late.
    pub fn last_window_end(&self, slice: Millis) -> Millis {
        match *self {
            Self::Tumble { size } => slice.saturating_add(size),
            Self::Hop { size, slide } => floor_to(slice, slide).saturating_add(size),
            Self::Cumulate { max_size, .. } => floor_to(slice, max_size).saturating_add(max_size),
            Self::Session { .. } | Self::Global => super::END_OF_TIME,
        }
    }

    /// The windows `(start, end)` that contain the slice starting at `slice`.
    pub fn windows_of_slice(&self, slice: Millis) -> Vec<(Millis, Millis)> {
        match *self {
            Self::Tumble { size } => vec![(slice, slice + size)],
            Self::Hop { size, slide } => {
                let pane = gcd(size, slide);
                // Windows start at multiples of `slide`, no later than the
                // slice and no earlier than `slice + pane - size`.
                let mut out = Vec::new();
                let mut start = floor_to(slice, slide);
                while start + size >= slice + pane {
                    out.push((start, start + size));
                    start -= slide;
                }
                out.reverse();
                out
            }
            Self::Cumulate { step, max_size } => {
                let period = floor_to(slice, max_size);
                let mut out = Vec::new();
                let mut end = slice + step;
                while end <= period + max_size {
                    out.push((period, end));
                    end += step;
                }
                out
            }
            Self::Global => vec![(0, super::END_OF_TIME)],
            Self::Session { .. } => Vec::new(),
        }
    }

    /// The slices that make up window `(start, end)`, in time order.
    pub fn slices_of_window(&self, start: Millis, end: Millis) -> Vec<Millis> {
        match (self, self.slice_len()) {
            (_, Some(len)) => (0..)
                .map(|i| start + i * len)
                .take_while(|s| *s < end)
                .collect(),
            (Self::Global, None) => vec![0],
            (_, None) => Vec::new(),
        }
    }
}

/// Refuses a window of more than [`MAX_SLICES_PER_WINDOW`] slices.
fn bounded_slices(window: &str, slices: Millis, slice_len: Millis) -> Result<(), String> {
    if slices <= MAX_SLICES_PER_WINDOW {
        return Ok(());
    }
    Err(format!(
        "{window} needs {slices} slices of {slice_len} ms per window, more than the {MAX_SLICES_PER_WINDOW} Sluice allows \
         (each window merges all its slices when it fires, and holds them in state until then): \
         use a longer slide or step, one that divides the size into at most {MAX_SLICES_PER_WINDOW} parts"
    ))
}

/// Rounds `ts` down to a multiple of `len`, correctly for times before 1970.
pub fn floor_to(ts: Millis, len: Millis) -> Millis {
    ts - ts.rem_euclid(len)
}

fn gcd(mut a: Millis, mut b: Millis) -> Millis {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumble_is_one_slice_per_window() {
        let w = WindowKind::Tumble { size: 10 };
        assert_eq!(w.slice_start(25), 20);
        assert_eq!(w.slice_start(-1), -10);
        assert_eq!(w.windows_of_slice(20), vec![(20, 30)]);
        assert_eq!(w.slices_of_window(20, 30), vec![20]);
        assert_eq!(w.last_window_end(20), 30);
    }

    #[test]
    fn hop_slices_by_the_gcd_and_windows_share_slices() {
        let w = WindowKind::Hop {
            size: 10_000,
            slide: 2_000,
        };
        assert_eq!(w.slice_len(), Some(2_000));
        assert_eq!(w.slice_start(7_500), 6_000);
        // The slice [6s, 8s) lies in the windows starting at -2s, 0s, 2s, 4s, 6s.
        assert_eq!(
            w.windows_of_slice(6_000),
            vec![
                (-2_000, 8_000),
                (0, 10_000),
                (2_000, 12_000),
                (4_000, 14_000),
                (6_000, 16_000)
            ]
        );
        assert_eq!(
            w.slices_of_window(0, 10_000),
            vec![0, 2_000, 4_000, 6_000, 8_000]
        );
        assert_eq!(w.last_window_end(6_000), 16_000);
    }

    #[test]
    fn hop_with_size_not_a_multiple_of_slide() {
        let w = WindowKind::Hop { size: 5, slide: 2 };
        assert_eq!(w.slice_len(), Some(1));
        // Slice [3, 4) is in windows [0, 5) and [2, 7) but not [4, 9).
        assert_eq!(w.windows_of_slice(3), vec![(0, 5), (2, 7)]);
        for (start, end) in w.windows_of_slice(3) {
            assert!(w.slices_of_window(start, end).contains(&3));
        }
    }

    #[test]
    fn every_hop_window_of_a_slice_contains_it() {
        let w = WindowKind::Hop { size: 9, slide: 6 };
        for slice in (-12..30).step_by(3) {
            let windows = w.windows_of_slice(slice);
            assert!(!windows.is_empty());
            for (start, end) in &windows {
                assert!(w.slices_of_window(*start, *end).contains(&slice));
            }
            assert_eq!(windows.last().map(|w| w.1), Some(w.last_window_end(slice)));
        }
    }

    #[test]
    fn windows_of_too_many_slices_are_refused() {
        let day = 86_400_000;
        let runaway = WindowKind::Hop {
            size: day,
            slide: 7,
        };
        let message = runaway.validate().expect_err("86.4 million slices");
        assert!(
            message.contains("HOP with slide 7 ms and size 86400000 ms needs 86400000 slices of 1 ms per window, more than the 100000 Sluice allows"),
            "{message}"
        );
        // A day sliding by a second is 86,400 slices: allowed.
        assert!(
            WindowKind::Hop {
                size: day,
                slide: 1_000
            }
            .validate()
            .is_ok()
        );
        // A slide that is not a divisor cuts finer slices: 1 s by 999 ms
        // is 1000 slices of 1 ms, a day by 999 ms is 86.4 million.
        assert!(
            WindowKind::Hop {
                size: 1_000,
                slide: 999
            }
            .validate()
            .is_ok()
        );
        assert!(
            WindowKind::Hop {
                size: day,
                slide: 999
            }
            .validate()
            .is_err()
        );
        let message = WindowKind::Cumulate {
            step: 10,
            max_size: day,
        }
        .validate()
        .expect_err("8.64 million steps");
        assert!(
            message.contains(
                "CUMULATE with step 10 ms and max size 86400000 ms needs 8640000 slices of 10 ms"
            ),
            "{message}"
        );
        assert!(
            WindowKind::Cumulate {
                step: 1_000,
                max_size: day
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn cumulate_windows_grow_within_their_period() {
        let w = WindowKind::Cumulate {
            step: 10,
            max_size: 30,
        };
        assert_eq!(w.windows_of_slice(30), vec![(30, 40), (30, 50), (30, 60)]);
        assert_eq!(w.windows_of_slice(50), vec![(30, 60)]);
        assert_eq!(w.slices_of_window(30, 50), vec![30, 40]);
        assert_eq!(w.last_window_end(40), 60);
        assert!(
            WindowKind::Cumulate {
                step: 7,
                max_size: 30
            }
            .validate()
            .is_err()
        );
    }
}
