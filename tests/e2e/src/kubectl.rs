//! A kubectl runner bound to the test cluster's kubeconfig.

use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// kubectl with `--kubeconfig` preset.
#[derive(Clone, Debug)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

/// What one kubectl invocation printed.
#[derive(Clone, Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    /// stdout on success, else an error carrying stderr.
    pub fn ok(self) -> anyhow::Result<String> {
        if !self.success {
            bail!("kubectl failed: {}", self.stderr.trim());
        }
        Ok(self.stdout)
    }
}

impl Kubectl {
    pub fn new(bin: PathBuf, kubeconfig: PathBuf) -> Self {
        Self { bin, kubeconfig }
    }

    /// Runs `kubectl <args>`; a non-zero exit is reported in the output, not as an error.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<KubectlOutput> {
        self.run_with_stdin(args, None).await
    }

    /// Runs `kubectl <args>` with `stdin` (for `-f -`).
    pub async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<KubectlOutput> {
        let mut child = tokio::process::Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        Ok(KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `kubectl apply -n <namespace> -f -` (client-side apply, as users run it).
    pub async fn apply(&self, namespace: &str, manifest: &str) -> anyhow::Result<KubectlOutput> {
        self.run_with_stdin(&["apply", "-n", namespace, "-f", "-"], Some(manifest))
            .await
    }

    /// `kubectl get <what> -n <namespace> -o json`, parsed.
    pub async fn get_json(&self, namespace: &str, what: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut args = vec!["get", "-n", namespace, "-o", "json"];
        args.extend_from_slice(what);
        let out = self.run(&args).await?.ok()?;
        serde_json::from_str(&out).context("parsing kubectl JSON output")
    }

    /// A blocking `kubectl delete namespace` for use in `Drop` (no runtime needed); first hands
    /// the namespace's objects to the conformance suite when capturing is on.
    pub(crate) fn delete_namespace_blocking(&self, name: &str) {
        if let Some(dir) = crate::capture::capture_dir() {
            crate::capture::capture_namespace(&self.bin, &self.kubeconfig, name, &dir);
        }
        let _ = std::process::Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "namespace", name, "--wait=false", "--ignore-not-found"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
