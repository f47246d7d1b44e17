//! Scenarios: a TOML file (or a model/variant pair) plus command-line overrides,
//! validated into everything a run needs.
//!
//! Every error names what is wrong: the file and line for malformed TOML, the key for
//! an unknown or out-of-range setting, the valid choices for an unknown model,
//! variant or op.

use crate::duration;
use crate::error::{usage, Error};
use crate::model::{self, ModelDesc, VariantDesc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest worker count accepted.
pub const MAX_THREADS: usize = 1024;

/// The on-disk form. Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub model: Option<String>,
    pub variant: Option<String>,
    pub description: Option<String>,
    pub threads: Option<usize>,
    pub duration: Option<String>,
    pub ops: Option<u64>,
    pub seed: Option<u64>,
    pub delay_prob: Option<f64>,
    pub window_boost: Option<f64>,
    pub stall_timeout: Option<String>,
    pub quiescent_every: Option<String>,
    /// Op name → weight.
    #[serde(default)]
    pub mix: toml::Table,
    /// Model-specific parameters.
    #[serde(default)]
    pub params: toml::Table,
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub model: Option<String>,
    pub variant: Option<String>,
    pub threads: Option<usize>,
    pub duration: Option<Duration>,
    pub ops: Option<u64>,
    pub seed: Option<u64>,
    pub delay_prob: Option<f64>,
    pub stall_timeout: Option<Duration>,
    /// `--param KEY=VALUE` flags, applied over `[params]`.
    pub params: Vec<String>,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Scenario name (file stem), or `<model>-<variant>` when given by flags.
    pub name: String,
    /// The file it came from, if any (for the replay command).
    pub path: Option<PathBuf>,
    pub model: &'static ModelDesc,
    pub variant: &'static VariantDesc,
    pub threads: usize,
    pub duration: Option<Duration>,
    pub ops: Option<u64>,
    pub seed: u64,
    pub delay_prob: f64,
    pub window_boost: f64,
    pub stall_timeout: Duration,
    pub quiescent_every: Duration,
    pub mix: toml::Table,
    pub params: toml::Table,
}

/// Defaults when neither the file nor a flag says.
pub const DEFAULT_THREADS: usize = 16;
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);
pub const DEFAULT_DELAY_PROB: f64 = crate::sched::stress::Injection::DEFAULT.prob;
pub const DEFAULT_WINDOW_BOOST: f64 = crate::sched::stress::Injection::DEFAULT.window_boost;
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);
pub const DEFAULT_QUIESCENT: Duration = Duration::from_millis(500);
/// The scenario `run` uses when given none.
pub const DEFAULT_SCENARIO: &str = "hpt-fixed";

/// The directory holding the shipped scenarios: `$KVMTORTURE_SCENARIOS`, else
/// `scenarios/` under the current directory, else next to the crate's sources.
pub fn scenarios_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KVMTORTURE_SCENARIOS") {
        return PathBuf::from(d);
    }
    let local = PathBuf::from("scenarios");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Names of the `*.toml` scenarios in `dir`, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    v.sort();
    v
}

/// Resolves `arg` (a scenario name in `dir` or a path to a TOML file) into its file.
pub fn locate(arg: &str, dir: &Path) -> Result<PathBuf, Error> {
    let as_path = PathBuf::from(arg);
    if as_path.is_file() {
        return Ok(as_path);
    }
    let named = dir.join(format!("{arg}.toml"));
    if named.is_file() {
        return Ok(named);
    }
    Err(usage(format!(
        "unknown scenario `{arg}`: no such file, and no {} (known scenarios: {})",
        named.display(),
        list(dir).join(", ")
    )))
}

/// Parses a scenario file; errors carry the path and toml's line/column.
pub fn parse_file(path: &Path) -> Result<ScenarioFile, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read scenario {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| usage(format!("malformed scenario {}: {e}", path.display())))
}

/// Builds a validated scenario from an optional file and the overrides.
pub fn resolve(file: Option<(&Path, ScenarioFile)>, o: &Overrides) -> Result<Scenario, Error> {
    let (path, f) = match file {
        Some((p, f)) => (Some(p.to_path_buf()), f),
        None => (None, ScenarioFile::default()),
    };
    let model_name = o
        .model
        .clone()
        .or(f.model.clone())
        .ok_or_else(|| usage("no model given: pass a SCENARIO or --model (see `kvmtorture list`)"))?;
    let model = find_model(&model_name)?;
    let variant_name = o
        .variant
        .clone()
        .or(f.variant.clone())
        .unwrap_or_else(|| "fixed".into());
    let variant = model.variant(&variant_name).ok_or_else(|| {
        usage(format!(
            "unknown variant `{variant_name}` of model `{}` (valid: {})",
            model.name,
            model
                .variants
                .iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let threads = o.threads.or(f.threads).unwrap_or(DEFAULT_THREADS);
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(usage(format!(
            "threads must be between 1 and {MAX_THREADS}, got {threads}"
        )));
    }
    let dur = |key: &str, v: &Option<String>| -> Result<Option<Duration>, Error> {
        v.as_deref()
            .map(|s| duration::parse(s).map_err(|e| usage(format!("{key}: {e}"))))
            .transpose()
    };
    let ops = o.ops.or(f.ops);
    if ops == Some(0) {
        return Err(usage("ops must be at least 1"));
    }
    let duration = match (o.duration, dur("duration", &f.duration)?, ops) {
        (Some(d), _, _) => Some(d),
        (None, _, Some(_)) if o.ops.is_some() => None,
        (None, Some(d), _) => Some(d),
        (None, None, Some(_)) => None,
        (None, None, None) => Some(DEFAULT_DURATION),
    };
    let delay_prob = o.delay_prob.or(f.delay_prob).unwrap_or(DEFAULT_DELAY_PROB);
    if !(0.0..=1.0).contains(&delay_prob) {
        return Err(usage(format!(
            "delay_prob must be within 0..=1, got {delay_prob}"
        )));
    }
    let window_boost = f.window_boost.unwrap_or(DEFAULT_WINDOW_BOOST);
    if !(window_boost >= 1.0 && window_boost.is_finite()) {
        return Err(usage(format!(
            "window_boost must be at least 1, got {window_boost}"
        )));
    }
    let name = match &path {
        Some(p) => p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario")
            .to_string(),
        None => format!("{}-{}", model.name, variant.name),
    };
    let sc = Scenario {
        name,
        path,
        model,
        variant,
        threads,
        duration,
        ops,
        seed: o.seed.or(f.seed).unwrap_or(1),
        delay_prob,
        window_boost,
        stall_timeout: o
            .stall_timeout
            .or(dur("stall_timeout", &f.stall_timeout)?)
            .unwrap_or(DEFAULT_STALL),
        quiescent_every: dur("quiescent_every", &f.quiescent_every)?.unwrap_or(DEFAULT_QUIESCENT),
        mix: f.mix,
        params: with_flags(model, f.params, &o.params)?,
    };
    sc.weights()?;
    sc.check_params()?;
    Ok(sc)
}

/// `[params]` with the `--param` flags applied over it.
fn with_flags(model: &ModelDesc, mut params: toml::Table, flags: &[String]) -> Result<toml::Table, Error> {
    for flag in flags {
        let (k, v) = model.parse_param_flag(flag).map_err(usage)?;
        params.insert(k, v);
    }
    Ok(params)
}

pub fn find_model(name: &str) -> Result<&'static ModelDesc, Error> {
    model::find(name).ok_or_else(|| {
        usage(format!(
            "unknown model `{name}` (valid: {})",
            model::public().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

impl Scenario {
    /// The model's op weights with this scenario's `[mix]` applied.
    pub fn weights(&self) -> Result<Vec<u32>, Error> {
        let ops = self.model.ops;
        let mut w: Vec<u32> = ops.iter().map(|o| o.weight).collect();
        for (k, v) in &self.mix {
            let i = ops.iter().position(|o| o.name == k).ok_or_else(|| {
                usage(format!(
                    "unknown op `{k}` in [mix] of model `{}` (valid: {})",
                    self.model.name,
                    ops.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")
                ))
            })?;
            w[i] = match v {
                toml::Value::Integer(n) if (0..=1_000_000).contains(n) => *n as u32,
                other => {
                    return Err(usage(format!(
                        "mix.{k} must be an integer weight 0..=1000000, got {other}"
                    )))
                }
            };
        }
        Ok(w)
    }

    /// Checks `[params]` against the model's descriptor.
    pub fn check_params(&self) -> Result<model::Params, Error> {
        let where_ = match &self.path {
            Some(p) => format!("scenario {}: ", p.display()),
            None => String::new(),
        };
        self.model
            .resolve_params(&self.params)
            .map_err(|e| usage(format!("{where_}{e}")))
    }

    /// The model configuration this scenario builds.
    pub fn model_config(&self) -> Result<model::ModelConfig, Error> {
        Ok(model::ModelConfig {
            variant: self.variant,
            threads: self.threads,
            params: self.check_params()?,
        })
    }
}

/// A scenario as saved in a run directory (`config.json`, `schedule.json`), enough
/// to rebuild it exactly without the TOML file it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub name: String,
    pub path: Option<PathBuf>,
    pub model: String,
    pub variant: String,
    pub threads: usize,
    pub duration_s: Option<f64>,
    pub ops: Option<u64>,
    pub seed: u64,
    pub delay_prob: f64,
    pub window_boost: f64,
    pub stall_timeout_s: f64,
    pub quiescent_every_s: f64,
    /// `[mix]` and `[params]` as TOML text.
    pub mix: String,
    pub params: String,
}

impl Scenario {
    pub fn save(&self) -> Saved {
        Saved {
            name: self.name.clone(),
            path: self.path.clone(),
            model: self.model.name.into(),
            variant: self.variant.name.into(),
            threads: self.threads,
            duration_s: self.duration.map(|d| d.as_secs_f64()),
            ops: self.ops,
            seed: self.seed,
            delay_prob: self.delay_prob,
            window_boost: self.window_boost,
            stall_timeout_s: self.stall_timeout.as_secs_f64(),
            quiescent_every_s: self.quiescent_every.as_secs_f64(),
            mix: self.mix.to_string(),
            params: self.params.to_string(),
        }
    }

    /// Rebuilds a saved scenario, validating it like a fresh one.
    pub fn restore(s: &Saved) -> Result<Scenario, Error> {
        let model = find_model(&s.model)?;
        let variant = model.variant(&s.variant).ok_or_else(|| {
            usage(format!(
                "saved run names unknown variant `{}` of `{}`",
                s.variant, s.model
            ))
        })?;
        let table = |what: &str, t: &str| -> Result<toml::Table, Error> {
            t.parse()
                .map_err(|e| usage(format!("saved run has a malformed {what} table: {e}")))
        };
        let secs = |x: f64| Duration::try_from_secs_f64(x).map_err(|e| usage(format!("saved duration: {e}")));
        let sc = Scenario {
            name: s.name.clone(),
            path: s.path.clone(),
            model,
            variant,
            threads: s.threads,
            duration: s.duration_s.map(secs).transpose()?,
            ops: s.ops,
            seed: s.seed,
            delay_prob: s.delay_prob,
            window_boost: s.window_boost,
            stall_timeout: secs(s.stall_timeout_s)?,
            quiescent_every: secs(s.quiescent_every_s)?,
            mix: table("mix", &s.mix)?,
            params: table("params", &s.params)?,
        };
        if !(1..=MAX_THREADS).contains(&sc.threads) || sc.ops == Some(0) {
            return Err(usage("saved run has an invalid thread or op count"));
        }
        sc.weights()?;
        sc.check_params()?;
        Ok(sc)
    }
}
