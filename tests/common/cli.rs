//! The one way the integration tests run the `dxr` binary.

use std::path::Path;
use std::process::{Command, Output};

/// A `dxr` command to add arguments, environment or pipes to (spawned tests, Ctrl-C tests).
pub fn command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dxr"))
}

/// Runs `dxr ARGS` to the end.
pub fn dxr(args: &[&str]) -> Output {
    command().args(args).output().expect("dxr runs")
}

/// `out`, after asserting that the run succeeded (its stderr and stdout in the message if not).
pub fn ok(out: Output) -> Output {
    assert_ok(&out);
    out
}

/// Asserts that the run succeeded (its stderr and stdout in the message if not).
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "dxr failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A path as an argument.
pub fn s(p: &Path) -> String {
    p.display().to_string()
}
