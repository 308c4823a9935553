//! The case-file suite: every `tests/cases/*.case` file, in every mode it
//! declares, at each parallelism, through the real executor.

use libtest_mimic::{Arguments, Failed, Trial};
use sluice_tests::case::Case;

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    // No cases must not look like every case passing.
    let paths = match sluice_tests::case::case_files(&dir) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
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
