//! The command line (clap derive). Parsing only: values are validated by the
//! scenario layer, which also sees the TOML file. Run settings are
//! [`Settings`](crate::settings::Settings), shared with the scenario file; the output
//! flags are [`OutputArgs`], shared by every command that runs or reads runs.

use crate::duration;
pub use crate::report::View;
pub use crate::settings::{ModeArg, Settings, StrategyArg};
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
    /// List models (ops, params, coverage, variants) and the shipped scenarios.
    List(ListArgs),
    /// Run one scenario (or --model/--variant) and report.
    Run(Box<RunArgs>),
    /// Re-run a run directory with its resolved settings (like kvm-again.sh).
    Again(Box<AgainArgs>),
    /// Replay a run directory: exactly (det) or N times with its seed (stress).
    Replay(ReplayArgs),
    /// Re-render the report of a finished run (like kvm-recheck.sh).
    Report(ReportArgs),
    /// Sweep seeds of one configuration, in parallel for det mode.
    Hunt(Box<HuntArgs>),
    /// Minimise a failing det run: fewer preemptions, ops and threads.
    Shrink(ShrinkArgs),
    /// Check the harness itself: every race variant caught, every clean one clean.
    Validate(Box<ValidateArgs>),
    /// Run a list of scenarios one after the other, the duration split across them.
    Batch(BatchArgs),
    /// Rounds of a batch with fresh seeds until the deadline (overnight soak).
    Soak(SoakArgs),
    /// Combine run, batch, soak and hunt directories (from several hosts) into one summary.
    Merge(MergeArgs),
    /// Measure the harness: throughput, window entries/s, det switches, detection times.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchSize {
    Tiny,
    Quick,
    Full,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The short bench (about two minutes): shorter runs, fewer seeds.
    #[arg(long)]
    pub quick: bool,
    /// Output format (the JSON is also saved under results/bench-<time>/).
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Only this model (repeat for several; default: every public model).
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// Compare the old default with this injection instead of each model's own,
    /// `PROB,BOOST,POLICY` (policy `uniform`, `targeted` or `preempt`).
    #[arg(long, value_name = "PROB,BOOST,POLICY")]
    pub candidate: Option<String>,
    /// Internal: run one measurement (a JSON spec) and print its figures; the bench
    /// runs each measurement in a process of its own.
    #[arg(long, hide = true)]
    pub one: Option<String>,
    /// Test hook: the run sizes (tiny is for the test suite).
    #[arg(long, value_enum, default_value = "full", hide = true)]
    pub size: BenchSize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Ktap,
}

/// Output flags: the same meaning for every command that runs or reads runs.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
    /// Where run directories are created.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Output format of the result on stdout.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// How failures show the interleaving: the protocol's steps, or every step.
    #[arg(long, value_enum, default_value = "protocol")]
    pub view: View,
}

/// A scenario and the settings that override it: shared by `run` and `hunt`.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// A scenario name (shipped or in scenarios/) or a path to a TOML file
    /// (default: hpt-fixed).
    pub scenario: Option<String>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub sc: ScenarioArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    /// Test hook: worker N hangs inside an op after 16 ops.
    #[arg(long, hide = true)]
    pub test_stall_worker: Option<usize>,
}

#[derive(Debug, Args)]
pub struct AgainArgs {
    /// A run directory (its scenario.toml), or a hunt directory with one failing run.
    pub run_dir: PathBuf,
    /// Settings to change (typically --duration or --seed).
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A run directory, or a hunt directory with one failing run.
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
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A finished run directory, or a hunt directory with one failing run.
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub out: OutputArgs,
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
    /// Det mode: schedules per case, from `--seed` on. A race or mutant must fail
    /// one; a clean variant must pass them all. (The slowest mutants, memslot's
    /// mut-map-after-unlock and mut-retry-seq-only, first fail at schedules 70 and
    /// 73 from seed 1.)
    #[arg(long, default_value_t = 128)]
    pub seeds: u64,
    /// stress (default) or det.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Clean variants must also have entered every race window (use long durations).
    #[arg(long)]
    pub coverage: bool,
    /// Also run the mutants (plausible slips in the fixed paths): each must be caught.
    #[arg(long)]
    pub mutants: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Also show mutants and unconfirmed variants.
    #[arg(long)]
    pub all: bool,
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
    /// Count only failures whose first violation reads TEXT (in `INVARIANT op:
    /// message`, numbers aside): the seeds of one race among several that break
    /// invariants.
    #[arg(long, value_name = "TEXT")]
    pub failure: Option<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ShrinkArgs {
    /// A failing det run directory (with schedule.json), or a hunt directory with one
    /// failing run.
    pub run_dir: PathBuf,
    /// Most re-runs the search may spend.
    #[arg(long, default_value_t = 2000)]
    pub budget: u32,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// What `batch` and `soak` share.
#[derive(Debug, Args)]
pub struct BatchOpts {
    /// Base seed: run i of round r gets its own seed from it (a list line's --seed wins).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop at the first run that is not clean (the rest are recorded as skipped).
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Continue an interrupted batch or soak directory (its batch.json holds the list,
    /// seeds and budget: the other arguments are taken from it).
    #[arg(long, value_name = "BATCH_DIR")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// List files (`*.list`: one scenario per line, `N*name` and flags allowed) or
    /// scenario names.
    pub inputs: Vec<String>,
    /// Total wall-clock budget, split evenly across the stress runs without their own.
    #[arg(long, value_parser = duration::parse, default_value = "60s")]
    pub duration: Duration,
    #[command(flatten)]
    pub opts: BatchOpts,
}

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// The list to repeat (default: scenarios/soak.list).
    pub list: Option<String>,
    /// Total budget: the soak stops by itself at this deadline.
    #[arg(long, value_parser = duration::parse, default_value = "8h")]
    pub duration: Duration,
    /// Budget of one round of the list (each round gets fresh seeds).
    #[arg(long, value_parser = duration::parse, default_value = "10m")]
    pub round_duration: Duration,
    #[command(flatten)]
    pub opts: BatchOpts,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Results, run, batch, soak or hunt directories (searched recursively).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// How interleaving.txt, report.txt and the terminal show the shrunk run.
    #[arg(long, value_enum, default_value = "protocol")]
    pub view: View,
}
