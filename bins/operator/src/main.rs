//! `lmcache-operator`: the controllers for LMCacheEngine, CacheBlendEngine and
//! LMCacheCoordinator, plus the offline `render` and `crds` commands.
//!
//! Reconcile pipeline (see [`reconcile`]): read → validate → resolve the coordinator → render →
//! ownership check → server-side apply (only children that are not converged) → status (only
//! when it changed). See `docs/operator.md`.

mod applied;
mod cached_pod;
mod children;
mod cli;
mod client_cache;
mod client_pod;
mod context;
mod controllers;
mod coordinator_index;
mod crds_cmd;
mod error;
mod eviction;
mod keys;
mod leader;
mod list_strategy;
mod mapping;
mod metrics;
mod opt_in;
mod packed;
mod pod_index;
mod primary;
mod reconcile;
mod render_cmd;
mod resync_queue;
mod run;
mod slim;
mod state;
mod watchdog;
mod watches;
mod write_counter;

#[cfg(test)]
mod tests;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Render(args) => render_cmd::run(&args),
        Command::Crds => match crds_cmd::render() {
            Ok(yaml) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                }
            }
            Err(error) => {
                eprintln!("cannot render the CRDs: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(args.worker_threads))
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("cannot start the async runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "exiting");
                    eprintln!("lmcache-operator: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
