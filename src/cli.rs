//! The command line (clap derive). Parsing only: values are validated again by the
//! scenario layer, which also sees the TOML file.

use crate::duration;
pub use crate::report::View;
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
    /// Re-run a run directory: exactly (det) or N times with its seed (stress).
    Replay(ReplayArgs),
    /// Sweep seeds of one configuration, in parallel for det mode.
    Hunt(Box<HuntArgs>),
    /// Minimise a failing det run: fewer preemptions, ops and threads.
    Shrink(ShrinkArgs),
    /// Check the harness itself: every buggy variant caught, every clean one clean.
    Validate(Box<ValidateArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Stress,
    Det,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    Random,
    Pct,
}

/// How a det run schedules (ignored in stress mode).
#[derive(Debug, Clone, Args)]
pub struct DetArgs {
    /// stress: free-running threads with injected delays; det: one thread at a time
    /// under a seeded scheduler, exactly replayable (default: stress for run, det
    /// for hunt).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Det-mode strategy.
    #[arg(long, value_enum, default_value = "random")]
    pub strategy: StrategyArg,
    /// PCT bug depth d (d-1 priority-change points).
    #[arg(long, default_value_t = 3)]
    pub pct_depth: u32,
    /// PCT's estimate of the run's steps (default: from threads and ops).
    #[arg(long)]
    pub pct_steps: Option<u64>,
    /// Random strategy: probability of a switch at each point.
    #[arg(long, default_value_t = 0.05)]
    pub switch_prob: f64,
    /// Det steps without any op completing before the run is a livelock (exit 3).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_idle_steps: u64,
    /// Det failures: how report.txt and the terminal show the interleaving.
    #[arg(long, value_enum, default_value = "protocol")]
    pub view: View,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Ktap,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Only this model's variants (default: every model).
    #[arg(long)]
    pub model: Option<String>,
    /// Stress-mode budget per variant.
    #[arg(long, value_parser = duration::parse, default_value = "10s")]
    pub duration: Duration,
    /// Ops per worker (det mode's budget; in stress mode whichever comes first).
    #[arg(long)]
    pub ops: Option<u64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Clean variants must also have entered every race window (use long durations).
    #[arg(long)]
    pub coverage: bool,
    /// Also run the mutants (plausible slips in the fixed paths): each must be caught.
    #[arg(long)]
    pub mutants: bool,
    /// Where the run directories of unexpected outcomes go.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    #[command(flatten)]
    pub det: DetArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Also show mutants and unconfirmed variants.
    #[arg(long)]
    pub all: bool,
}

/// What selects and overrides a scenario: shared by `run` and `hunt`.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
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
    /// Wall-clock budget (stress mode): 30s, 10m, 8h, 500ms.
    #[arg(long, value_parser = duration::parse)]
    pub duration: Option<Duration>,
    /// Operations per worker (a run ends at whichever budget comes first).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Probability of an injected delay at a plain preemption point (0 turns injection off).
    #[arg(long)]
    pub delay_prob: Option<f64>,
    /// A worker without progress for this long is a hang (exit 3).
    #[arg(long, value_parser = duration::parse)]
    pub stall_timeout: Option<Duration>,
    /// A model parameter, KEY=VALUE (repeatable; checked like the scenario's [params]).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub sc: ScenarioArgs,
    /// Seed of every random stream of the run.
    #[arg(long)]
    pub seed: Option<u64>,
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
    #[command(flatten)]
    pub det: DetArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A run directory (with summary.json).
    pub run_dir: PathBuf,
    /// Stress runs: how many re-runs with the same seed.
    #[arg(long, default_value_t = 10)]
    pub times: u32,
    /// Stress runs: search det seeds of the same configuration for an exact
    /// reproduction of the same invariant, and save it.
    #[arg(long)]
    pub det: bool,
    /// With --det: how many det seeds to try.
    #[arg(long, default_value_t = 1000)]
    pub budget: u64,
    /// Where new run directories are created (default: next to RUN_DIR).
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Det runs: how the terminal shows the replayed interleaving.
    #[arg(long, value_enum, default_value = "protocol")]
    pub view: View,
}

#[derive(Debug, Args)]
pub struct HuntArgs {
    #[command(flatten)]
    pub sc: ScenarioArgs,
    /// Seed range A..B (inclusive).
    #[arg(long)]
    pub seeds: String,
    /// Parallel runs (default: all cores for det, 1 for stress).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// I/N: only the seeds whose position in the range is I modulo N.
    #[arg(long)]
    pub shard: Option<String>,
    /// Stop at the first failing seed.
    #[arg(long)]
    pub stop_on_first: bool,
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    #[command(flatten)]
    pub det: DetArgs,
}

#[derive(Debug, Args)]
pub struct ShrinkArgs {
    /// A failing det run directory (with schedule.json).
    pub run_dir: PathBuf,
    /// Most re-runs the search may spend.
    #[arg(long, default_value_t = 1000)]
    pub budget: u32,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// How interleaving.txt, report.txt and the terminal show the shrunk run.
    #[arg(long, value_enum, default_value = "protocol")]
    pub view: View,
}
