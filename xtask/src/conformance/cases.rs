//! The case files: what the product's command lines print, as the suite's JSON.

use crate::util::{root, yaml_documents};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// First-line marker of an inject case's expectations (tests/conformance/inject/*.yaml).
const EXPECTATIONS: &str = "# conformance-expectations:";

/// Writes every case into `dir` (emptied first), splitting inject cases into files under
/// `split`; returns how many.
pub fn write_all(dir: &Path, split: &Path, captured: Option<&Path>) -> anyhow::Result<usize> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let mut count = 0;
    for fixture in yaml_files(&root().join("crates/manifest-renderer/tests/fixtures"))? {
        let objects = yaml_documents(&render(&fixture)?)?;
        write_case(dir, &format!("renderer-{}", stem(&fixture)), objects, None)?;
        count += 1;
    }
    let seed = root().join("crates/blend-injector/tests/fixtures/seed");
    let objects = inject(&seed.join("engine.yaml"), &seed.join("deployment.yaml"))?;
    write_case(dir, "inject-seed", objects, None)?;
    count += 1;
    for case in yaml_files(&root().join("tests/conformance/inject"))? {
        let (objects, expectations) = inject_case(&case, split)?;
        write_case(dir, &format!("inject-{}", stem(&case)), objects, expectations)?;
        count += 1;
    }
    count += copy_cases(&root().join("tests/conformance/controls"), dir, "control-")?;
    if let Some(captured) = captured.filter(|c| c.is_dir()) {
        count += copy_cases(captured, dir, "")?;
    }
    Ok(count)
}

fn write_case(
    dir: &Path,
    name: &str,
    objects: Vec<Value>,
    expectations: Option<Value>,
) -> anyhow::Result<()> {
    let mut case = json!({"name": name.replacen('-', "/", 1), "expect": "pass", "objects": objects});
    if let Some(expectations) = expectations {
        case["expectations"] = expectations;
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&case)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// `lmcache-operator render -f fixture`.
fn render(fixture: &Path) -> anyhow::Result<String> {
    let path = fixture.to_string_lossy();
    output(&binary("lmcache-operator"), &["render", "-f", &path])
}

/// `lmcache-webhook inject --engine engines -f workloads`; fails unless every workload of the
/// file was injected (a skipped pod would be silently left unchecked).
fn inject(engines: &Path, workloads: &Path) -> anyhow::Result<Vec<Value>> {
    let (engines, workloads) = (engines.to_string_lossy(), workloads.to_string_lossy());
    let out = Command::new(binary("lmcache-webhook"))
        .args(["inject", "--engine", &engines, "-f", &workloads])
        .output()
        .context("running lmcache-webhook inject")?;
    let notes = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("lmcache-webhook inject {workloads}: {notes}");
    }
    for note in notes.lines().filter(|l| !l.trim().is_empty()) {
        if !note.contains(": injected") {
            bail!("{workloads}: not injected: {note}");
        }
    }
    yaml_documents(&String::from_utf8_lossy(&out.stdout))
}

/// An inject case file: its engines and workloads split into two files (under `split`) for
/// `inject`.
fn inject_case(path: &Path, split: &Path) -> anyhow::Result<(Vec<Value>, Option<Value>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let expectations = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(EXPECTATIONS))
        .map(|json| serde_json::from_str::<Value>(json.trim()))
        .transpose()
        .with_context(|| format!("{}: expectations are not JSON", path.display()))?;
    let (engines, workloads): (Vec<Value>, Vec<Value>) = yaml_documents(&text)?
        .into_iter()
        .partition(|d| matches!(d["kind"].as_str(), Some("CacheBlendEngine" | "LMCacheEngine")));
    let split = split.join(stem(path));
    std::fs::create_dir_all(&split)?;
    let engines_file = split.join("engines.yaml");
    let workloads_file = split.join("workloads.yaml");
    std::fs::write(&engines_file, yaml_stream(&engines)?)?;
    std::fs::write(&workloads_file, yaml_stream(&workloads)?)?;
    Ok((inject(&engines_file, &workloads_file)?, expectations))
}

fn copy_cases(from: &Path, to: &Path, prefix: &str) -> anyhow::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            std::fs::copy(&path, to.join(format!("{prefix}{name}")))?;
            count += 1;
        }
    }
    Ok(count)
}

fn binary(name: &str) -> PathBuf {
    root().join("target/debug").join(name)
}

fn output(program: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {}: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn yaml_stream(docs: &[Value]) -> anyhow::Result<String> {
    let parts: Vec<String> = docs
        .iter()
        .map(serde_saphyr::to_string)
        .collect::<Result<_, _>>()?;
    Ok(parts.join("---\n"))
}
