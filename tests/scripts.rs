//! The scripts of `scripts/` where they can go wrong without a broker:
//! installing tansu while another process does, with a stand-in for the
//! 15-minute `cargo install` (`SLUICE_TANSU_INSTALL`).

use std::path::Path;
use std::process::{Command, Output};

fn broker_sh(tools: &Path, tmp: &Path, install: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/broker.sh"))
        .arg("install")
        // No tansu of the machine's own on PATH.
        .env("PATH", "/usr/bin:/bin")
        .env("SLUICE_TOOLS", tools)
        .env("TMPDIR", tmp)
        .env("SLUICE_TANSU_INSTALL", install);
    command
}

/// A stand-in install: notes its target directory, checks nobody else
/// builds there, takes a while, then puts a `tansu` into the tools.
const SLOW_INSTALL: &str = r#"
    echo "$CARGO_TARGET_DIR" >> "$SLUICE_TOOLS/installs"
    [ -z "$(ls -A "$CARGO_TARGET_DIR")" ] || { echo "target directory in use" >&2; exit 3; }
    touch "$CARGO_TARGET_DIR/building"
    sleep 2
    mkdir -p "$SLUICE_TOOLS/bin"
    printf '#!/bin/sh\n' > "$SLUICE_TOOLS/bin/tansu"
    chmod +x "$SLUICE_TOOLS/bin/tansu"
"#;

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn leftover_builds(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .expect("read tmp")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sluice-tansu-build"))
        .collect()
}

#[test]
fn two_installs_at_once_build_tansu_once_in_a_private_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = dir.path().join("tools");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let first = broker_sh(&tools, &tmp, SLOW_INSTALL)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the first install");
    let second = broker_sh(&tools, &tmp, SLOW_INSTALL)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the second install");
    let tansu = tools.join("bin/tansu").display().to_string();
    for child in [first, second] {
        let output = child.wait_with_output().expect("install");
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            tansu,
            "{}",
            text(&output)
        );
    }
    let installs = std::fs::read_to_string(tools.join("installs")).expect("install log");
    assert_eq!(
        installs.lines().count(),
        1,
        "the second waits and finds tansu installed: {installs}"
    );
    assert_eq!(leftover_builds(&tmp), Vec::<String>::new());
    // Installed now: nothing more to do.
    let again = broker_sh(&tools, &tmp, "exit 9").output().expect("install");
    assert!(again.status.success(), "{}", text(&again));
}

#[test]
fn a_failed_install_says_so_and_leaves_no_build_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let output = broker_sh(
        &dir.path().join("tools"),
        &tmp,
        "echo no compiler >&2; exit 7",
    )
    .output()
    .expect("install");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(7), "{}", text(&output));
    assert!(stderr.contains("no compiler"), "{stderr}");
    assert!(
        stderr.contains("installing tansu into") && stderr.contains("failed (exit status 7"),
        "{stderr}"
    );
    assert_eq!(leftover_builds(&tmp), Vec::<String>::new());
}
