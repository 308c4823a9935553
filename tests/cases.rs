//! The case-file suite: every `tests/cases/*.case` file, in every mode it
//! declares, at each parallelism, through the real executor.

use libtest_mimic::{Arguments, Failed, Trial};
use sluice_tests::case::Case;

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "case"));
    paths.sort();
    let mut trials = Vec::new();
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("case")
            .to_string();
        let case = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| Case::parse(&name, &text));
        let case = match case {
            Ok(case) => case,
            Err(e) => {
                trials.push(Trial::test(format!("{name}::parse"), move || {
                    Err(Failed::from(e))
                }));
                continue;
            }
        };
        for mode in case.modes.clone() {
            for parallelism in case.parallelism.clone() {
                let case = case.clone();
                let trial = Trial::test(format!("{name}::{mode}::p{parallelism}"), move || {
                    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                    case.run(mode, parallelism, dir.path())
                        .map_err(Failed::from)
                });
                trials.push(trial);
            }
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}
