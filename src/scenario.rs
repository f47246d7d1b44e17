//! Scenarios: a TOML file (or a model/variant pair) plus command-line overrides,
//! validated into everything a run needs.
//!
//! Every error names what is wrong: the file and line for malformed TOML, the key for
//! an unknown or out-of-range setting, the valid choices for an unknown model,
//! variant or op.

use crate::error::{usage, Error};
use crate::model::{self, InjectionPolicy, ModelDesc, VariantDesc};
pub use crate::settings::{ModeArg, Settings, StrategyArg};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest worker count accepted.
pub const MAX_THREADS: usize = 1024;

/// The on-disk form of a scenario is [`Settings`]: the same keys as the flags.
pub type ScenarioFile = Settings;

/// Command-line values that override the file: the same struct.
pub type Overrides = Settings;

/// The det-mode settings of a scenario, resolved (used only when the run is det).
#[derive(Debug, Clone, PartialEq)]
pub struct DetSettings {
    /// `None`: the command's default mode (stress for `run`, det for `hunt`).
    pub mode: Option<ModeArg>,
    pub strategy: StrategyArg,
    pub switch_prob: f64,
    pub pct_depth: u32,
    /// PCT's step estimate; `None`: from threads and ops.
    pub pct_steps: Option<u64>,
    pub max_idle_steps: u64,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Scenario name (file stem), or `<model>-<variant>` when given by flags.
    pub name: String,
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub description: Option<String>,
    pub model: &'static ModelDesc,
    pub variant: &'static VariantDesc,
    pub threads: usize,
    pub duration: Option<Duration>,
    pub ops: Option<u64>,
    pub seed: u64,
    pub delay_prob: f64,
    pub window_boost: f64,
    /// Which delays go where (default: the model's, from its descriptor).
    pub injection: InjectionPolicy,
    pub stall_timeout: Duration,
    pub quiescent_every: Duration,
    pub keep_going: bool,
    pub det: DetSettings,
    pub mix: toml::Table,
    /// `[params]` with the `--param` flags applied (validated against the descriptor).
    pub params: toml::Table,
}

/// Defaults when neither the file nor a flag says.
pub const DEFAULT_THREADS: usize = 16;
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);
pub const DEFAULT_DELAY_PROB: f64 = crate::sched::stress::Injection::UNIFORM.prob;
pub const DEFAULT_WINDOW_BOOST: f64 = crate::sched::stress::Injection::UNIFORM.window_boost;
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);
pub const DEFAULT_QUIESCENT: Duration = Duration::from_millis(500);
pub const DEFAULT_SWITCH_PROB: f64 = 0.05;
pub const DEFAULT_PCT_DEPTH: u32 = 3;
pub const DEFAULT_MAX_IDLE_STEPS: u64 = 1_000_000;
/// The scenario `run` uses when given none.
pub const DEFAULT_SCENARIO: &str = "hpt-fixed";

/// The scenarios compiled into the binary (`build.rs`).
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/scenarios.rs"));
}

/// The directory searched for scenarios by name before the embedded copies:
/// `$KVMTORTURE_SCENARIOS`, else `scenarios/` under the current directory.
pub fn scenarios_dir() -> PathBuf {
    std::env::var_os("KVMTORTURE_SCENARIOS").map_or_else(|| PathBuf::from("scenarios"), PathBuf::from)
}

/// Names of the scenarios on disk in [`scenarios_dir`] and embedded, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let on_disk = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(String::from))?
        });
    let shipped = embedded::EMBEDDED
        .iter()
        .filter_map(|(f, _)| f.strip_suffix(".toml").map(String::from));
    let mut v: Vec<String> = on_disk.chain(shipped).collect();
    v.sort();
    v.dedup();
    v
}

/// The text of a shipped file (a scenario `NAME.toml` or a list `NAME.list`).
pub fn shipped(file: &str) -> Option<&'static str> {
    embedded::EMBEDDED
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, t)| *t)
}

/// A scenario's text by path or name: a TOML file, else `NAME.toml` in
/// [`scenarios_dir`], else the embedded copy. Returns the path (a label for the
/// embedded copy), the text, and the name an embedded copy stands for.
pub fn named_text(arg: &str) -> Result<(PathBuf, String, Option<String>), Error> {
    let as_path = PathBuf::from(arg);
    if as_path.is_dir() {
        return Err(usage(format!(
            "scenario `{arg}` is a directory, not a TOML file (for a run directory use `again` or `replay`)"
        )));
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| usage(format!("cannot read scenario {}: {e}", p.display())))
    };
    if as_path.is_file() {
        return Ok((as_path.clone(), read(&as_path)?, None));
    }
    let stem = arg.strip_suffix(".toml").unwrap_or(arg);
    let named = scenarios_dir().join(format!("{stem}.toml"));
    if named.is_file() {
        return Ok((named.clone(), read(&named)?, None));
    }
    let file = format!("{stem}.toml");
    if let Some(text) = shipped(&file) {
        return Ok((
            PathBuf::from(format!("(shipped) {file}")),
            text.to_string(),
            Some(stem.to_string()),
        ));
    }
    Err(usage(format!(
        "unknown scenario `{arg}`: no such file, no {}, and no shipped scenario of that name (known: {})",
        named.display(),
        list(&scenarios_dir()).join(", ")
    )))
}

/// A scenario file by path or name (see [`named_text`]), parsed.
pub fn load_named(arg: &str) -> Result<(PathBuf, ScenarioFile), Error> {
    let (path, text, name) = named_text(arg)?;
    let mut f = parse_text(&path, &text)?;
    if f.name.is_none() {
        f.name = name;
    }
    Ok((path, f))
}

/// Parses a scenario file; errors carry the path and toml's line/column.
pub fn parse_file(path: &Path) -> Result<ScenarioFile, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read scenario {}: {e}", path.display())))?;
    parse_text(path, &text)
}

pub fn parse_text(path: &Path, text: &str) -> Result<ScenarioFile, Error> {
    toml::from_str(text).map_err(|e| usage(format!("malformed scenario {}: {e}", path.display())))
}

/// Builds a validated scenario from an optional file and the overrides (flags).
pub fn resolve(file: Option<(&Path, ScenarioFile)>, o: &Overrides) -> Result<Scenario, Error> {
    let (path, base) = match file {
        Some((p, f)) => (Some(p.to_path_buf()), f),
        None => (None, Settings::default()),
    };
    // Det runs have no wall-clock budget: a flag's --ops replaces the file's duration.
    let ops_only = o.ops.is_some() && o.duration.is_none();
    let mut f = base.overlay(o);
    if ops_only {
        f.duration = None;
    }
    let name = match (&f.name, &path) {
        (Some(n), _) => n.clone(),
        (None, Some(p)) => p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario")
            .to_string(),
        (None, None) => format!(
            "{}-{}",
            f.model.as_deref().unwrap_or("?"),
            f.variant.as_deref().unwrap_or("fixed")
        ),
    };
    from_settings(name, path, f)
}

/// Validates merged settings into a scenario.
fn from_settings(name: String, path: Option<PathBuf>, f: Settings) -> Result<Scenario, Error> {
    let model_name = f
        .model
        .clone()
        .ok_or_else(|| usage("no model given: pass a SCENARIO or --model (see `kvmtorture list`)"))?;
    let model = find_model(&model_name)?;
    let variant_name = f.variant.clone().unwrap_or_else(|| "fixed".into());
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
    let threads = f.threads.unwrap_or(DEFAULT_THREADS);
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(usage(format!(
            "threads must be between 1 and {MAX_THREADS}, got {threads}"
        )));
    }
    if f.ops == Some(0) {
        return Err(usage("ops must be at least 1"));
    }
    let duration = match (f.duration, f.ops) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    let delay_prob = f.delay_prob.unwrap_or(DEFAULT_DELAY_PROB);
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
    let det = DetSettings {
        mode: f.mode,
        strategy: f.strategy.unwrap_or(StrategyArg::Random),
        switch_prob: f.switch_prob.unwrap_or(DEFAULT_SWITCH_PROB),
        pct_depth: f.pct_depth.unwrap_or(DEFAULT_PCT_DEPTH),
        pct_steps: f.pct_steps,
        max_idle_steps: f.max_idle_steps.unwrap_or(DEFAULT_MAX_IDLE_STEPS),
    };
    if !(0.0..=1.0).contains(&det.switch_prob) {
        return Err(usage(format!(
            "switch_prob must be within 0..=1, got {}",
            det.switch_prob
        )));
    }
    if !(1..=64).contains(&det.pct_depth) {
        return Err(usage(format!(
            "pct_depth must be within 1..=64, got {}",
            det.pct_depth
        )));
    }
    if det.max_idle_steps == 0 || det.pct_steps == Some(0) {
        return Err(usage("max_idle_steps and pct_steps must be at least 1"));
    }
    let sc = Scenario {
        name,
        path,
        description: f.description.clone(),
        model,
        variant,
        threads,
        duration,
        ops: f.ops,
        seed: f.seed.unwrap_or(1),
        delay_prob,
        window_boost,
        injection: f.injection.unwrap_or(model.injection),
        stall_timeout: f.stall_timeout.unwrap_or(DEFAULT_STALL),
        quiescent_every: f.quiescent_every.unwrap_or(DEFAULT_QUIESCENT),
        keep_going: f.keep_going.unwrap_or(false),
        det,
        params: with_flags(model, f.params, &f.param_flags)?,
        mix: f.mix,
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
        // A role may be switched off (a worker with other roles still has work), but
        // a mix with nothing to run is a mistake, not a run.
        if w.iter().all(|&x| x == 0) {
            return Err(usage(format!(
                "[mix] gives every op of model `{}` weight 0: nothing would run",
                self.model.name
            )));
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

/// A scenario as saved in a run directory (`scenario.toml`, and inside
/// `config.json` / `schedule.json`): every setting resolved, so that it rebuilds the
/// same run without the file it came from and whatever the defaults become.
pub type Saved = Settings;

impl Scenario {
    /// Every setting of this scenario, resolved (params with their defaults).
    pub fn save(&self) -> Saved {
        let params = self
            .check_params()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            model::ParamValue::Int(i) => toml::Value::Integer(i as i64),
                            model::ParamValue::Bool(b) => toml::Value::Boolean(b),
                            model::ParamValue::Choice(c) => toml::Value::String(c.into()),
                        };
                        (k.to_string(), v)
                    })
                    .collect()
            })
            .unwrap_or_else(|_| self.params.clone());
        let mix = self
            .model
            .ops
            .iter()
            .zip(self.weights().unwrap_or_default())
            .map(|(o, w)| (o.name.to_string(), toml::Value::Integer(w.into())))
            .collect();
        Settings {
            name: Some(self.name.clone()),
            description: self.description.clone(),
            model: Some(self.model.name.into()),
            variant: Some(self.variant.name.into()),
            threads: Some(self.threads),
            duration: self.duration,
            ops: self.ops,
            seed: Some(self.seed),
            delay_prob: Some(self.delay_prob),
            window_boost: Some(self.window_boost),
            injection: Some(self.injection),
            stall_timeout: Some(self.stall_timeout),
            quiescent_every: Some(self.quiescent_every),
            keep_going: Some(self.keep_going),
            mode: self.det.mode,
            strategy: Some(self.det.strategy),
            switch_prob: Some(self.det.switch_prob),
            pct_depth: Some(self.det.pct_depth),
            pct_steps: self.det.pct_steps,
            max_idle_steps: Some(self.det.max_idle_steps),
            mix,
            params,
            param_flags: Vec::new(),
        }
    }

    /// Rebuilds a saved scenario, validating it like a fresh one.
    pub fn restore(s: &Saved) -> Result<Scenario, Error> {
        let name = s.name.clone().unwrap_or_else(|| "saved".into());
        from_settings(name, None, s.clone())
    }
}
