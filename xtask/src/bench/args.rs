//! The flags of `cargo xtask bench`.

/// Flags of `cargo xtask bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Engines applied at once in the convergence phase.
    #[arg(long, default_value_t = 1000)]
    pub engines: usize,
    /// Namespaces the engines are spread over.
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// Engines present when the operator's memory is measured (no extra engines when not
    /// above --engines).
    #[arg(long, default_value_t = 1000)]
    pub memory_engines: usize,
    /// The operator's --max-concurrent-reconciles, and the floor client's requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Seconds of the steady-state write window after convergence.
    #[arg(long, default_value_t = 60)]
    pub steady_seconds: u64,
    /// Seconds per webhook rate step.
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
    /// Webhook request rates (per second), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    pub rates: Vec<u32>,
    /// Limit for each wait for convergence, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Skip convergence, steady state and operator memory.
    #[arg(long)]
    pub skip_convergence: bool,
    /// Skip the webhook phase.
    #[arg(long)]
    pub skip_webhook: bool,
    /// Skip the change-latency phase (an operator restart with every engine converged).
    #[arg(long)]
    pub skip_change: bool,
    /// Engines of each kind (LMCacheEngine, CacheBlendEngine) the webhook caches while loaded.
    #[arg(long, default_value_t = 1000)]
    pub webhook_engines: usize,
    /// Leave the cluster running when the bench started it, with the operator phase's engines
    /// (for profiling: run an operator against them by hand).
    #[arg(long)]
    pub keep: bool,
    /// Skip the floor client (no ratios): for quick runs and profiling.
    #[arg(long)]
    pub skip_floor: bool,
    /// Use the shared cluster of `cargo xtask cluster` (target/cluster) instead of the bench's
    /// own (target/bench/cluster), which nothing else starts, stops or loads.
    #[arg(long)]
    pub shared_cluster: bool,
}
