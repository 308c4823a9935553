//! Failpoints: named places where a test can make the process die, as a
//! `kill -9` would, at exactly the moment it wants to prove safe.
//!
//! `SLUICE_FAILPOINTS="sink.commit.rename=3"` aborts the process (no
//! destructors, no flushing: what a crash leaves) the third time the
//! failpoint `sink.commit.rename` is reached; `name=spin` makes every
//! thread that reaches it spin forever instead (an operator too busy to
//! notice anything), and `name=sleep:MS` makes it sleep MS milliseconds at
//! every hit (a slow job); several are separated by commas. Without the
//! variable a failpoint costs one atomic load.
//!
//! ```
//! // Reached once per staged file moved into place; harmless when unset.
//! sluice_engine::failpoint::hit("sink.commit.rename");
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms failpoints.
pub const ENV: &str = "SLUICE_FAILPOINTS";

/// What an armed failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Abort the process on this hit.
    AbortAt(u64),
    /// Spin the thread forever, at every hit.
    Spin,
    /// Sleep the thread this many milliseconds, at every hit.
    Sleep(u64),
}

/// Armed failpoints: what each does, and its hits so far.
fn armed() -> &'static BTreeMap<String, (Action, AtomicU64)> {
    static ARMED: OnceLock<BTreeMap<String, (Action, AtomicU64)>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var(ENV)
            .map(|spec| parse(&spec))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, at)| (name, (at, AtomicU64::new(0))))
            .collect()
    })
}

/// Parses `name=N,name2=spin` (`name` alone means the first hit). Entries
/// that do not parse are ignored: failpoints exist for tests only.
fn parse(spec: &str) -> BTreeMap<String, Action> {
    spec.split(',')
        .filter_map(|entry| {
            let entry = entry.trim();
            match entry.split_once('=') {
                Some((name, "spin")) => Some((name.trim().to_string(), Action::Spin)),
                Some((name, action)) if action.starts_with("sleep:") => Some((
                    name.trim().to_string(),
                    Action::Sleep(action["sleep:".len()..].parse().ok()?),
                )),
                Some((name, at)) => Some((
                    name.trim().to_string(),
                    Action::AbortAt(at.trim().parse().ok()?),
                )),
                None if !entry.is_empty() => Some((entry.to_string(), Action::AbortAt(1))),
                None => None,
            }
        })
        .collect()
}

/// Does what failpoint `name` is armed to do on this hit, if anything.
pub fn hit(name: &str) {
    let armed = armed();
    if armed.is_empty() {
        return;
    }
    match armed.get(name) {
        Some((Action::AbortAt(at), hits)) if hits.fetch_add(1, Ordering::SeqCst) + 1 == *at => {
            eprintln!("sluice: failpoint {name} reached (hit {at}): aborting");
            std::process::abort();
        }
        Some((Action::Spin, hits)) => {
            if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!("sluice: failpoint {name} reached: spinning");
            }
            loop {
                std::hint::spin_loop();
            }
        }
        Some((Action::Sleep(ms), hits)) => {
            if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!("sluice: failpoint {name} reached: sleeping {ms} ms at every hit");
            }
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_the_hit_to_abort_on() {
        let parsed = parse("a=3, b ,c=x,,d=1,e=spin,f=sleep:20");
        assert_eq!(parsed.get("a"), Some(&Action::AbortAt(3)));
        assert_eq!(parsed.get("b"), Some(&Action::AbortAt(1)));
        assert_eq!(parsed.get("c"), None, "not a number");
        assert_eq!(parsed.get("d"), Some(&Action::AbortAt(1)));
        assert_eq!(parsed.get("e"), Some(&Action::Spin));
        assert_eq!(parsed.get("f"), Some(&Action::Sleep(20)));
        assert_eq!(parsed.len(), 5);
    }
}
