//! The driver's command line, as bench/run.sh calls it. (Being an integration test, this also
//! makes `cargo test --workspace` build the driver's binary for the smoke run.)

use std::process::Command;

#[test]
fn help_names_both_scenarios_and_both_sleeper_modes() {
    let out = Command::new(env!("CARGO_BIN_EXE_sundial-bench-rust"))
        .arg("--help")
        .output()
        .expect("the driver runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["throughput", "sleepers", "arm", "fire"] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
}

#[test]
fn an_unknown_scenario_is_refused_with_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_sundial-bench-rust"))
        .args(["--scenario", "naps"])
        .output()
        .expect("the driver runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("naps") && err.contains("sleepers"), "{err}");
}
