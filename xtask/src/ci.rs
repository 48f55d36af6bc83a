//! `cargo xtask ci`: what CI runs, in order of cost.

use crate::util::{run as sh, run_env};

pub fn run() -> anyhow::Result<()> {
    sh("cargo", &["fmt", "--all", "--", "--check"])?;
    sh(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    crate::crd::run(true)?;
    crate::manifests::run(true)?;
    // INSTA_UPDATE=no: a changed snapshot fails instead of writing a .snap.new.
    run_env(
        "cargo",
        &["test", "--workspace", "--locked"],
        &[("INSTA_UPDATE", "no"), ("CI", "true")],
    )?;
    run_env(
        "cargo",
        &["doc", "-p", "lmcache-api", "--no-deps", "--locked"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}
