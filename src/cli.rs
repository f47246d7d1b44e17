//! The command line (clap derive). Parsing only: values are validated again by the
//! scenario layer, which also sees the TOML file.

use crate::duration;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "kvmtorture",
    version,
    about = "Torture harness for KVM and powerpc hash-MMU race protocols"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List models, their variants and the scenarios found in scenarios/.
    List(ListArgs),
    /// Run one scenario (or --model/--variant) and report.
    Run(Box<RunArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Ktap,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A scenario name in scenarios/ or a path to a TOML file (default: hpt-fixed).
    pub scenario: Option<String>,
    /// Model to run (overrides the scenario's).
    #[arg(long)]
    pub model: Option<String>,
    /// Variant of the model (default: fixed).
    #[arg(long)]
    pub variant: Option<String>,
    /// Worker threads, 1..=1024.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Wall-clock budget: 30s, 10m, 8h, 500ms.
    #[arg(long, value_parser = duration::parse)]
    pub duration: Option<Duration>,
    /// Operations per worker (a run ends at whichever budget comes first).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Seed of every random stream of the run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Probability of an injected delay at a plain preemption point (0 turns injection off).
    #[arg(long)]
    pub delay_prob: Option<f64>,
    /// A worker without progress for this long is a hang (exit 3).
    #[arg(long, value_parser = duration::parse)]
    pub stall_timeout: Option<Duration>,
    /// Where run directories are created.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
    /// Output format of the final result on stdout.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Keep running after a violation (up to the budget), counting them all.
    #[arg(long)]
    pub keep_going: bool,
    /// Test hook: worker N hangs inside an op after 16 ops.
    #[arg(long, hide = true)]
    pub test_stall_worker: Option<usize>,
}
