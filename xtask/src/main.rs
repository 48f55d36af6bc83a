//! Project automation: `cargo xtask <command>`.

mod bench;
mod ci;
mod cluster;
mod conformance;
mod demo;
mod deps;
mod e2e;
mod install;
mod release;
#[cfg(test)]
mod structure;
mod util;

use clap::{Parser, Subcommand};
use release::{chart, crd, image, manifests};

#[derive(Parser)]
#[command(name = "xtask", about = "LMCache operator project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the CRDs to deploy/crds/ (or, with --check, fail when they are stale).
    Crd {
        /// Exit non-zero instead of writing when the committed CRDs differ.
        #[arg(long)]
        check: bool,
    },
    /// Write deploy/install.yaml, deploy/install-cert-manager.yaml, deploy/kustomize/ and the
    /// chart's generated files (or, with --check, fail when stale).
    Manifests {
        /// Exit non-zero instead of writing when the committed files differ.
        #[arg(long)]
        check: bool,
    },
    /// Write docs/reference/ (the API reference generated from the CRD schemas), or with --check fail
    /// when stale.
    Reference {
        /// Exit non-zero instead of writing when the committed reference differs.
        #[arg(long)]
        check: bool,
    },
    /// Lint the Helm chart (helm built from the Go module proxy and cached) and compare its
    /// rendering with the install files object by object.
    Chart,
    /// Build static release binaries and daemonless OCI image archives in target/images/.
    Image {
        /// Package the existing target/release binaries without rebuilding.
        #[arg(long)]
        skip_build: bool,
        /// Also check the archives with skopeo and run the packaged binaries' --version.
        #[arg(long)]
        verify: bool,
    },
    /// Dependency hygiene: cargo-deny (built from crates.io and cached) checks licences, banned
    /// crates, duplicate versions and sources against deny.toml.
    Deps,
    /// Every check CI runs: fmt, clippy, tests, generated-file drift.
    Ci,
    /// Bring up the local control plane, run the product on it (left running) and apply the
    /// examples in deploy/examples/; stop with `cargo xtask cluster down`.
    Demo,
    /// Local control plane (etcd, apiserver, controller-manager, scheduler, kwok) on 127.0.0.1.
    Cluster {
        #[command(subcommand)]
        action: cluster::Action,
    },
    /// Run the end-to-end suite (tests/e2e) against the local cluster with the operator and
    /// webhook as local processes.
    E2e(e2e::Args),
    /// Run the rendered and injected objects (renderer fixtures, webhook cases, e2e captures)
    /// through the released LMCache and vLLM packages (cached venv, torch stubbed).
    Conformance(conformance::Args),
    /// Install deploy/install.yaml and the Helm chart on the local control plane, with the
    /// pods run from the built image archives; injection, leader election, certificate
    /// rotation and uninstall are checked.
    InstallTest(install::Args),
    /// Benchmarks (not part of `ci`): convergence vs a floor, steady-state writes, webhook
    /// latency vs a floor, memory; writes target/bench/report.{json,md}.
    Bench(bench::Args),
    /// The bench's floor TLS server (started by `bench`).
    #[command(hide = true)]
    BenchFloor(bench::load::FloorArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { check } => crd::run(check),
        Command::Manifests { check } => manifests::run(check),
        Command::Reference { check } => release::reference::run(check),
        Command::Image { skip_build, verify } => {
            let built = image::run(skip_build)?;
            if verify {
                image::verify(&built)?;
            }
            Ok(())
        }
        Command::Chart => chart::run(),
        Command::Deps => deps::run(),
        Command::Ci => ci::run(),
        Command::Cluster { action } => cluster::run(action),
        Command::E2e(args) => e2e::run(args),
        Command::Conformance(args) => conformance::run_suite(&args),
        Command::InstallTest(args) => install::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchFloor(args) => bench::load::serve_floor(args),
        Command::Demo => demo::run(),
    }
}
