//! Flink SQL that Sluice does not run yet, named as such.
//!
//! DataFusion reports a Flink function it does not know as an invalid
//! function, with a suggestion that is no help (`PROCTIME` → "did you mean
//! 'to_time'?"). For the Flink constructs Sluice does not have yet, say what
//! the construct is and what to write instead.

/// What to say of a call to `function` that DataFusion does not know, when
/// it is one of Flink's.
pub fn flink_function(function: &str) -> Option<String> {
    let name = function.to_ascii_lowercase();
    let legacy_window = ["tumble", "hop", "session"].iter().find(|w| {
        name.strip_prefix(*w)
            .is_some_and(|rest| ["_start", "_end", "_rowtime", "_proctime"].contains(&rest))
    });
    if let Some(window) = legacy_window {
        let tvf = window.to_ascii_uppercase();
        return Some(format!(
            "{}(...) belongs to Flink's legacy group windows (GROUP BY {tvf}(time, size)), which Sluice does not support; write the window table function instead: FROM TABLE({tvf}(TABLE t, DESCRIPTOR(time), size)) GROUP BY window_start, window_end, with window_start and window_end as the window's bounds",
            function.to_ascii_uppercase()
        ));
    }
    match name.as_str() {
        "proctime" => Some(
            "PROCTIME() (a processing-time attribute) is not supported yet: Sluice's windows and joins run on event time; declare a WATERMARK on a TIMESTAMP column and use that column".to_string(),
        ),
        "current_watermark" => Some("CURRENT_WATERMARK() is not supported yet".to_string()),
        _ => None,
    }
}

/// The Flink explanation of DataFusion's "Invalid function 'name'" message.
pub fn explain_invalid_function(message: &str) -> Option<String> {
    let rest = message.split("Invalid function '").nth(1)?;
    let name = rest.split('\'').next()?;
    flink_function(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_flink_constructs_sluice_lacks() {
        let m = explain_invalid_function(
            "Invalid function 'session_start'.\nDid you mean 'union_tag'?",
        )
        .expect("named");
        assert!(
            m.starts_with("SESSION_START(...) belongs to Flink's legacy group windows"),
            "{m}"
        );
        assert!(m.contains("FROM TABLE(SESSION(TABLE t"), "{m}");
        let m = explain_invalid_function("Invalid function 'proctime'.").expect("named");
        assert!(
            m.starts_with("PROCTIME() (a processing-time attribute) is not supported yet"),
            "{m}"
        );
        assert_eq!(
            explain_invalid_function("Invalid function 'frobnicate'."),
            None
        );
        assert_eq!(
            flink_function("tumble"),
            None,
            "the TVF itself is supported"
        );
    }
}
