//! Small helpers shared by the tasks.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `$CARGO_TARGET_DIR`, else `target/` in the workspace root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Runs a command from the workspace root, echoing it, and fails on a non-zero exit.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    run_env(program, args, &[])
}

/// [`run`] with extra environment variables for the child.
pub fn run_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    eprintln!("+ {program} {}", args.join(" "));
    let mut command = Command::new(program);
    for var in cargo_run_vars() {
        command.env_remove(var);
    }
    let status = command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Variables `cargo run` sets for xtask itself. Inherited by a nested cargo, they change the
/// fingerprints of build scripts (ring, rustls) and force a rebuild on every other invocation.
pub fn cargo_run_vars() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| {
            let key = key.to_string_lossy();
            key.starts_with("CARGO_PKG_")
                || matches!(
                    key.as_ref(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                )
        })
        .collect()
}

/// The non-empty documents of a YAML stream as JSON values, typed as serde_yaml typed them:
/// only YAML 1.2 booleans, and numbers with leading zeros or underscores stay strings.
pub fn yaml_documents(text: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    };
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(text, options)?;
    Ok(docs.into_iter().filter(|doc| !doc.is_null()).collect())
}

/// Writes `content` to `path`, or with `check` compares and reports drift.
/// Returns true when the file is (or now is) current.
pub fn write_or_check(path: &Path, content: &str, check: bool) -> anyhow::Result<bool> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current == content {
        return Ok(true);
    }
    if check {
        eprintln!("stale: {}", path.display());
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_documents_type_scalars_as_serde_yaml_did_and_skip_empty_documents() {
        let text = "a: yes\nb: 0755\nc: 1_000\nd: true\ne: 12\nf: '7'\n---\n# a comment only\n---\ng: ~\n";
        assert_eq!(
            yaml_documents(text).unwrap(),
            [
                json!({"a": "yes", "b": "0755", "c": "1_000", "d": true, "e": 12, "f": "7"}),
                json!({"g": null})
            ]
        );
    }
}
