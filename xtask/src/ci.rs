//! `cargo xtask ci`: what CI runs, in order of cost.

use crate::util::{run as sh, run_env};
use clap::{Args as _, FromArgMatches as _};

/// `cargo xtask e2e` with its defaults (no filter; the cluster is stopped afterwards).
fn default_e2e_args() -> anyhow::Result<crate::e2e::Args> {
    let matches = crate::e2e::Args::augment_args(clap::Command::new("e2e")).try_get_matches_from(["e2e"])?;
    Ok(crate::e2e::Args::from_arg_matches(&matches)?)
}

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
    crate::release::crd::run(true)?;
    crate::release::manifests::run(true)?;
    crate::release::reference::run(true)?;
    crate::deps::run()?;
    crate::release::chart::run()?;
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
    // Release binaries as daemonless OCI archives, inspected with skopeo and run.
    let built = crate::release::image::run(false)?;
    crate::release::image::verify(&built)?;
    // The end-to-end suite on the local control plane (built and cached on first use); every
    // test namespace's objects are captured for the conformance suite.
    let captured = crate::conformance::work_dir().join("captured");
    if captured.exists() {
        std::fs::remove_dir_all(&captured)?;
    }
    let mut e2e = default_e2e_args()?;
    e2e.capture = Some(captured.clone());
    crate::e2e::run(e2e)?;
    // install.yaml and the chart as shipped: pods run from the archives built above.
    crate::install::run_with(&built, false)?;
    // The released LMCache and vLLM parse and serve what the product rendered and injected;
    // every release of the compatibility table (docs/conformance.md), so it stays true.
    crate::conformance::run_suite(&crate::conformance::Args {
        lmcache: crate::conformance::COMPATIBLE
            .iter()
            .map(|v| v.to_string())
            .collect(),
        vllm: crate::conformance::VLLM.to_string(),
        captured: Some(captured),
    })?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}
