//! `cargo xtask deps`: dependency hygiene with cargo-deny (deny.toml: licences, banned crates,
//! duplicate versions, sources), the tool built once from crates.io and cached.

use crate::cluster::{cache_dir, run_build_script};
use crate::util::{run as sh, run_env};

const CARGO_DENY_VERSION: &str = "0.20.2";

pub fn run() -> anyhow::Result<()> {
    run_build_script(
        "build-cargo-deny.sh",
        &[("CARGO_DENY_VERSION", CARGO_DENY_VERSION)],
    )?;
    let bin = cache_dir().join(format!("cargo-deny-{CARGO_DENY_VERSION}/bin"));
    let path = match std::env::var_os("PATH") {
        Some(path) => {
            let mut dirs = vec![bin];
            dirs.extend(std::env::split_paths(&path));
            std::env::join_paths(dirs)?
        }
        None => bin.into_os_string(),
    };
    // cargo-deny reads `cargo metadata` for every platform, so the crates of targets this
    // machine never builds (windows-sys and friends) must be in the local registry too; a build
    // downloads only the host's (a fresh machine failed here). `cargo fetch` without `--target`
    // downloads them all from crates.io.
    sh("cargo", &["fetch", "--locked"])?;
    // Offline: advisories need the RustSec database from GitHub, which CI cannot reach
    // (deny.toml says so); the other checks read only Cargo.lock and the local registry.
    run_env(
        "cargo",
        &[
            "deny",
            "--offline",
            "--locked",
            "check",
            "bans",
            "licenses",
            "sources",
        ],
        &[("PATH", &path.to_string_lossy())],
    )
}
