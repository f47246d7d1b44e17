//! Every run setting, defined once.
//!
//! The same struct is a group of command-line flags (clap, flattened into `run`,
//! `hunt`, `again`, `batch`) and the top-level keys of a scenario file (serde, unknown
//! keys rejected), and a resolved run is saved as one (`scenario.toml` in its run
//! directory). So a new setting cannot be forgotten in the file, the flags, or the
//! command that reruns a run: it exists in all three or in none.

use crate::duration;
use crate::model::InjectionPolicy;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeArg {
    Stress,
    Det,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyArg {
    Random,
    Pct,
}

/// A scenario's settings: each `None` falls back to the file, then to the default.
#[derive(Debug, Default, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The scenario's name in run directories (default: the file's stem, or
    /// `<model>-<variant>`).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One line saying what the scenario is for (file only).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Model to run (see `kvmtorture list`).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Variant of the model (default: fixed).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Worker threads, 1..=1024 (default 16).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Wall-clock budget (stress mode): 30s, 10m, 8h, 500ms (default 30s).
    #[arg(long, value_parser = duration::parse)]
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Operations per worker (a run ends at whichever budget comes first).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<u64>,
    /// Seed of every random stream of the run (default 1).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Probability of an injected delay at a plain preemption point (0: injection off).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_prob: Option<f64>,
    /// How much likelier an injected delay is at a race window than at a plain point.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_boost: Option<f64>,
    /// Stress delays: uniform (a spin, yield or sleep at any point), targeted (plain
    /// points only spin; yields at race windows) or preempt (uniform, but a plain
    /// point sleeps when threads outnumber cores). Default: the model's (`list`).
    /// With 32 or more threads a core, every policy injects `threads / cores` times
    /// less often: the OS already preempts each thread every time slice.
    #[arg(long, value_enum)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionPolicy>,
    /// A worker without progress for this long is a hang (exit 3).
    #[arg(long, value_parser = duration::parse)]
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub stall_timeout: Option<Duration>,
    /// Period of the quiescent deep check (stress mode).
    #[arg(long, value_parser = duration::parse)]
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub quiescent_every: Option<Duration>,
    /// Keep running after a violation (up to the budget), counting them all.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_going: Option<bool>,
    /// stress: free-running threads with injected delays; det: one thread at a time
    /// under a seeded scheduler, exactly replayable (default: stress; det for hunt).
    #[arg(long, value_enum)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ModeArg>,
    /// Det-mode strategy (default random).
    #[arg(long, value_enum)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyArg>,
    /// Random strategy: probability of a switch at each point (default 0.05).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_prob: Option<f64>,
    /// PCT bug depth d: d-1 priority-change points (default 3).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct_depth: Option<u32>,
    /// PCT's estimate of the run's steps (default: from threads and ops).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct_steps: Option<u64>,
    /// Det steps without any op completing before the run is a livelock (exit 3).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_steps: Option<u64>,
    /// Op name → weight (file only: `[mix]`).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub mix: toml::Table,
    /// Model parameters (file: `[params]`).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub params: toml::Table,
    /// A model parameter, KEY=VALUE (repeatable; checked like `[params]`, applied over it).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    #[serde(skip)]
    pub param_flags: Vec<String>,
}

/// `a.overlay(b)`: each of `b`'s values that is set replaces `a`'s.
macro_rules! overlay {
    ($a:ident, $b:ident; $($f:ident),*) => {
        $( if $b.$f.is_some() { $a.$f = $b.$f.clone(); } )*
    };
}

impl Settings {
    /// These settings with `top`'s set values on top (flags over a file, an
    /// override over a saved run). Tables merge key by key; `--param` flags append.
    pub fn overlay(mut self, top: &Settings) -> Settings {
        overlay!(self, top; name, description, model, variant, threads, duration, ops, seed,
            delay_prob, window_boost, injection, stall_timeout, quiescent_every, keep_going, mode,
            strategy, switch_prob, pct_depth, pct_steps, max_idle_steps);
        for (k, v) in &top.mix {
            self.mix.insert(k.clone(), v.clone());
        }
        for (k, v) in &top.params {
            self.params.insert(k.clone(), v.clone());
        }
        self.param_flags.extend(top.param_flags.iter().cloned());
        self
    }

    /// The TOML text of these settings (a resolved scenario file).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("settings serialise")
    }
}

/// Durations as the strings `duration::parse` reads (`30s`, `500ms`).
mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::duration::format(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        crate::duration::parse(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}
