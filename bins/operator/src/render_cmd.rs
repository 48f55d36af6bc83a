//! `lmcache-operator render -f FILE...`: the offline renderer on files or standard input.

use crate::cli::RenderArgs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// Reads every input (`-` = standard input), renders, and prints the YAML to stdout, or each
/// problem to stderr with exit status 1 and nothing on stdout.
pub fn run(args: &RenderArgs) -> ExitCode {
    let mut inputs = Vec::with_capacity(args.files.len());
    for file in &args.files {
        match read_input(file) {
            Ok(text) => inputs.push(text),
            Err(error) => {
                eprintln!("{}: {error}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    match render(&inputs, &args.cluster_domain) {
        Ok(yaml) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(yaml.as_bytes()).and_then(|()| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(lines) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Renders the concatenation of `inputs` (each a multi-document YAML stream).
pub fn render(inputs: &[String], cluster_domain: &str) -> Result<String, Vec<String>> {
    lmcache_manifest_renderer::render_documents(&inputs.join("\n---\n"), cluster_domain)
}

fn read_input(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_across_files_and_reports_errors() {
        let engine = "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheEngine\nmetadata:\n  name: my-cache\nspec:\n  l1:\n    sizeGB: 60\n";
        let coordinator =
            "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheCoordinator\nmetadata:\n  name: c\n";
        let out = render(&[engine.to_string(), coordinator.to_string()], "cluster.local").unwrap();
        assert!(out.contains("name: my-cache-connection"), "{out}");
        assert!(out.contains("kind: Deployment"), "{out}");
        let err = render(&["kind: Nope\n".to_string()], "cluster.local").unwrap_err();
        assert!(!err.is_empty());
    }
}
