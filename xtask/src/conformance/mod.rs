//! `cargo xtask conformance`: the product's output run through the released LMCache and vLLM
//! packages (tests/conformance/, amendment A1 §3).
//!
//! The cases are made by the product's own command lines, so the suite checks what a user
//! gets: every renderer fixture through `lmcache-operator render`, every webhook case through
//! `lmcache-webhook inject`, plus the objects the e2e run captured and the suite's controls.
//! The Python side (a cached venv with the released wheels, torch stubbed) does the checking.

mod cases;

use crate::util::{root, run};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// LMCache and vLLM releases the suite runs against by default.
pub const LMCACHE: &str = "0.5.6";
/// See [`LMCACHE`].
pub const VLLM: &str = "0.33.0";
/// The LMCache releases docs/conformance.md lists as accepting everything the product renders;
/// `cargo xtask ci` checks each.
pub const COMPATIBLE: [&str; 2] = [LMCACHE, "0.5.5"];

/// Flags of `cargo xtask conformance`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// LMCache release to check against (repeatable: the compatibility table runs several).
    #[arg(long = "lmcache", default_values_t = [LMCACHE.to_string()])]
    pub lmcache: Vec<String>,
    /// vLLM release to check against.
    #[arg(long, default_value = VLLM)]
    pub vllm: String,
    /// Directory of case files captured by the e2e run (`LMCACHE_CONFORMANCE_CAPTURE`).
    #[arg(long)]
    pub captured: Option<PathBuf>,
}

/// Where the generated cases and reports go.
pub fn work_dir() -> PathBuf {
    root().join("target/conformance")
}

/// Builds the cases and runs the suite for each requested LMCache release.
pub fn run_suite(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    run(
        "cargo",
        &[
            "build",
            "--locked",
            "-p",
            "lmcache-operator",
            "-p",
            "lmcache-webhook",
        ],
    )?;
    let cases = work_dir().join("cases");
    let count = cases::write_all(&cases, &work_dir().join("split"), args.captured.as_deref())?;
    eprintln!("[conformance] {count} cases in {}", cases.display());
    let mut failed = Vec::new();
    for lmcache in &args.lmcache {
        let python = setup(lmcache, &args.vllm)?;
        let report = work_dir().join(format!("report-lmcache-{lmcache}.json"));
        let ok = check(&python, &cases, &report)?;
        eprintln!(
            "[conformance] lmcache {lmcache}, vllm {}: {} (report {})",
            args.vllm,
            if ok { "passed" } else { "FAILED" },
            report.display()
        );
        if !ok {
            failed.push(lmcache.clone());
        }
    }
    eprintln!("[conformance] took {:.1}s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("conformance failed against lmcache {}", failed.join(", "));
    }
    Ok(())
}

/// The venv's python for this pair (created and cached by `setup.sh` on first use).
fn setup(lmcache: &str, vllm: &str) -> anyhow::Result<PathBuf> {
    let script = root().join("tests/conformance/setup.sh");
    eprintln!("+ {} --lmcache {lmcache} --vllm {vllm}", script.display());
    let output = Command::new("bash")
        .arg(&script)
        .args(["--lmcache", lmcache, "--vllm", vllm])
        .env("LMCACHE_CACHE_DIR", crate::cluster::cache_dir())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed with {}", script.display(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let python = stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .context("setup.sh printed no python path")?;
    Ok(PathBuf::from(python))
}

/// Runs check.py on `cases`; whether every case met its expectation.
fn check(python: &Path, cases: &Path, report: &Path) -> anyhow::Result<bool> {
    let script = root().join("tests/conformance/check.py");
    let status = Command::new(python)
        .arg(&script)
        .arg("--input")
        .arg(cases)
        .arg("--report")
        .arg(report)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    Ok(status.success())
}
