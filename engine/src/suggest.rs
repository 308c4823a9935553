//! "Did you mean": the known name closest to a misspelled one.
//!
//! Messages about an unknown option, setting or function name the closest
//! known name when it is close enough to be the one meant: within a third
//! of the name's length in edits (Damerau–Levenshtein, so a swapped pair of
//! letters is one edit), as `fromat` for `format`.

/// The candidate closest to `name`, if any is close enough to suggest.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| {
            let distance = strsim::damerau_levenshtein(&name.to_lowercase(), &c.to_lowercase());
            (distance, c)
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.cmp(y)))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        let known = ["format", "path", "pipeline.name", "csv.field-delimiter"];
        assert_eq!(closest("fromat", known), Some("format"));
        assert_eq!(closest("pipeline.nmae", known), Some("pipeline.name"));
        assert_eq!(closest("pth", known), Some("path"));
        assert_eq!(closest("compression", known), None);
        assert_eq!(closest("FORMAT", known), Some("format"));
    }
}
