//! Static descriptors: one per model, the only place a model's facts live.
//!
//! Building a model by name, `list`, `validate`, scenario checking (`[mix]`,
//! `[params]`, `--param`) and the registry-driven tests all read these tables; no
//! other code matches on model or variant names.

use super::contract::Model;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything kvmtorture knows about one model before building it.
pub struct ModelDesc {
    pub name: &'static str,
    /// One line: the protocol and the commit it is about.
    pub protocol: &'static str,
    /// The kernel files the model follows.
    pub kernel_files: &'static [&'static str],
    /// The seed document under `shared/seeds/` and the spec under `shared/spec/`.
    pub seed: &'static str,
    pub spec: &'static str,
    /// Role `r` is bit `r` of a worker's role mask.
    pub roles: &'static [RoleDesc],
    /// Op id `i` is `ops[i]`.
    pub ops: &'static [OpDesc],
    pub params: &'static [ParamDesc],
    /// Coverage counter `id` is `coverage[id]`.
    pub coverage: &'static [CoverDesc],
    pub variants: &'static [VariantDesc],
    /// The stress injection policy that reaches this model's race windows best: its
    /// default, measured by `kvmtorture bench` (README, Performance).
    pub injection: InjectionPolicy,
    /// Not a kernel protocol (the scheduler's self-test): left out of `list`,
    /// `validate` and the default run.
    pub hidden: bool,
    pub build: fn(&ModelConfig) -> Result<Arc<dyn Model>, String>,
}

/// Which delays stress mode injects where (the run setting `injection`).
///
/// Defined here, not in the scheduler, because which one a model gets by default is
/// a fact of its protocol's shape, kept in its descriptor: windows that need a
/// thread descheduled *inside* a long region (an irq arriving while a stopper has
/// irqs off, a refresh preempted between its unlock and its relock) are reached by
/// yields and sleeps anywhere; windows between parties that meet on a shared hot
/// set (a fault racing a resize commit) are reached by throughput, which the
/// yields and sleeps at plain points cost tenfold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InjectionPolicy {
    /// Any point: a spin (half the time), a yield or a short sleep, windows from
    /// nanoseconds to a scheduler tick (the injector before issue 17).
    Uniform,
    /// Plain points only spin; race windows spin, yield or sleep. With more threads
    /// than cores, plain points delay `crowd` (threads per core) times less often
    /// and shorter, and windows yield: the OS already stops every thread for about
    /// `crowd` time slices at points of its own choosing, so an injected spin only
    /// holds a core the others wait for, and a yield is itself a long window.
    Targeted,
    /// As [`InjectionPolicy::Uniform`], but with more threads than cores a plain
    /// point's delay is a preemption: a short sleep that gives the core to another
    /// thread, as the kernel's scheduler would at a tick, instead of a spin that
    /// holds it. Windows a thread must be descheduled inside (an irq raised while a
    /// stopper has irqs off) are entered several times as often.
    Preempt,
}

impl InjectionPolicy {
    /// The name `--injection` and `injection =` take.
    pub fn name(self) -> &'static str {
        match self {
            InjectionPolicy::Uniform => "uniform",
            InjectionPolicy::Targeted => "targeted",
            InjectionPolicy::Preempt => "preempt",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RoleDesc {
    /// Short label used in reports (`vCPU`, `resizer`, `notifier`).
    pub name: &'static str,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct OpDesc {
    pub name: &'static str,
    /// The role (a bit index into a worker's role mask) that runs this op.
    pub role: u32,
    /// Default weight within the role; scenarios may override it by name.
    pub weight: u32,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct CoverDesc {
    pub name: &'static str,
    /// The ops whose runs can enter the window. Its share is its count over theirs: a
    /// window a mix enters in under 1% of the ops that could enter it is tortured by
    /// chance, not by the workload (the summary's "rarest windows" say which).
    pub per: &'static [&'static str],
    /// The code point it counts: the race window it proves was entered.
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct ParamDesc {
    pub name: &'static str,
    pub kind: ParamKind,
    pub doc: &'static str,
}

/// A parameter's type, default and valid values.
#[derive(Debug, Clone, Copy)]
pub enum ParamKind {
    Int {
        default: u64,
        min: u64,
        max: u64,
    },
    Bool {
        default: bool,
    },
    Choice {
        default: &'static str,
        choices: &'static [&'static str],
    },
}

/// What a variant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantKind {
    /// The protocol as fixed (mainline or a historical fix): must run clean forever.
    Fixed,
    /// A historical bug: the protocol before its fix. Must be caught.
    Race,
    /// A negative control: a change that must *not* be caught (it is not a bug).
    Control,
    /// A plausible slip in the fixed path that no kernel commit made; proves that an
    /// invariant catches it. Hidden from the default `list`.
    Mutant,
    /// A suspected bug nobody has confirmed: run, reported, never asserted.
    Unconfirmed,
}

impl VariantKind {
    pub fn name(self) -> &'static str {
        match self {
            VariantKind::Fixed => "fixed",
            VariantKind::Race => "race",
            VariantKind::Control => "control",
            VariantKind::Mutant => "mutant",
            VariantKind::Unconfirmed => "unconfirmed",
        }
    }
}

/// The expected end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Clean,
    /// A violation of one of these invariants: in det mode the first found, in stress
    /// mode any of the workers' first violations (which worker reports first is up to
    /// the machine, and another consequence of the same race may win).
    Caught(&'static [&'static str]),
    /// The watchdog (stress) or the det scheduler's hang detection ends it (exit 3).
    Stall,
    /// No expectation (unconfirmed variants).
    Unknown,
}

impl Expect {
    /// The invariants that catch the variant; none for any other expectation.
    pub fn caught_by(self) -> &'static [&'static str] {
        match self {
            Expect::Caught(ids) => ids,
            _ => &[],
        }
    }
}

/// One more configuration of a variant and what it must give there, e.g.
/// `buggy` under `hypervisor = "kvm"` is clean.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub params: &'static [(&'static str, &'static str)],
    pub expect: Expect,
}

#[derive(Debug, Clone, Copy)]
pub struct VariantDesc {
    pub name: &'static str,
    /// The kernel commit the variant is about (the fix, the bug, or the revert).
    pub commit: &'static str,
    pub kind: VariantKind,
    /// What a run with the default params gives.
    pub expect: Expect,
    /// Other param settings and what the variant gives there.
    pub cells: &'static [Cell],
    /// True if the bug can only show with two or more threads (a one-thread run must
    /// then be clean).
    pub needs_concurrency: bool,
    pub doc: &'static str,
}

impl VariantDesc {
    /// A mutant: a slip in the fixed path that no kernel commit made, caught by one of
    /// `caught` (every mutant is declared through this, so they differ only in what
    /// they say).
    pub const fn mutant(
        name: &'static str,
        caught: &'static [&'static str],
        needs_concurrency: bool,
        doc: &'static str,
    ) -> VariantDesc {
        VariantDesc {
            name,
            commit: "none (mutant)",
            kind: VariantKind::Mutant,
            expect: Expect::Caught(caught),
            cells: &[],
            needs_concurrency,
            doc,
        }
    }

    /// True for variants the default `list` and `validate` leave out.
    pub fn hidden(&self) -> bool {
        matches!(self.kind, VariantKind::Mutant | VariantKind::Unconfirmed)
    }

    /// Every configuration the harness checks this variant in: the default params
    /// first, then its cells.
    pub fn configurations(&self) -> Vec<Cell> {
        std::iter::once(Cell {
            params: &[],
            expect: self.expect,
        })
        .chain(self.cells.iter().copied())
        .collect()
    }
}

impl ModelDesc {
    pub fn variant(&self, name: &str) -> Option<&'static VariantDesc> {
        self.variants.iter().find(|v| v.name == name)
    }

    pub fn op(&self, name: &str) -> Option<usize> {
        self.ops.iter().position(|o| o.name == name)
    }

    pub fn role_name(&self, role: u32) -> &'static str {
        self.roles.get(role as usize).map_or("?", |r| r.name)
    }

    /// The label of a worker with role mask `mask` (`vCPU`, `host+VMM`).
    pub fn roles_label(&self, mask: u32) -> String {
        let names: Vec<&str> = (0..self.roles.len() as u32)
            .filter(|r| mask & (1 << r) != 0)
            .map(|r| self.role_name(r))
            .collect();
        names.join("+")
    }

    /// Checks a scenario's `[params]` against the table and fills in the defaults.
    /// Errors name the key and the valid keys or range.
    pub fn resolve_params(&self, given: &toml::Table) -> Result<Params, String> {
        if let Some(k) = given.keys().find(|k| !self.params.iter().any(|p| p.name == *k)) {
            let known: Vec<&str> = self.params.iter().map(|p| p.name).collect();
            return Err(format!(
                "unknown key params.{k} for model {} (valid: {})",
                self.name,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        let mut values = BTreeMap::new();
        for p in self.params {
            let v = match given.get(p.name) {
                None => p.kind.default(),
                Some(v) => p.check(v)?,
            };
            values.insert(p.name, v);
        }
        Ok(Params { values })
    }

    /// Parses a `--param KEY=VALUE` flag into a TOML value of the parameter's type.
    pub fn parse_param_flag(&self, flag: &str) -> Result<(String, toml::Value), String> {
        let (k, v) = flag
            .split_once('=')
            .ok_or_else(|| format!("--param {flag}: expected KEY=VALUE"))?;
        let p = self.params.iter().find(|p| p.name == k).ok_or_else(|| {
            let known: Vec<&str> = self.params.iter().map(|p| p.name).collect();
            format!(
                "--param {flag}: unknown key {k} for model {} (valid: {})",
                self.name,
                known.join(", ")
            )
        })?;
        let value = match p.kind {
            ParamKind::Int { .. } => toml::Value::Integer(
                v.parse::<i64>()
                    .map_err(|_| format!("--param {flag}: {k} must be an integer"))?,
            ),
            ParamKind::Bool { .. } => toml::Value::Boolean(
                v.parse::<bool>()
                    .map_err(|_| format!("--param {flag}: {k} must be true or false"))?,
            ),
            ParamKind::Choice { .. } => toml::Value::String(v.to_string()),
        };
        p.check(&value).map_err(|e| format!("--param {flag}: {e}"))?;
        Ok((k.to_string(), value))
    }
}

impl ParamKind {
    fn default(&self) -> ParamValue {
        match *self {
            ParamKind::Int { default, .. } => ParamValue::Int(default),
            ParamKind::Bool { default } => ParamValue::Bool(default),
            ParamKind::Choice { default, .. } => ParamValue::Choice(default),
        }
    }

    /// `int 1..=64 (default 4)`, for `list` and error messages.
    pub fn describe(&self) -> String {
        match self {
            ParamKind::Int { default, min, max } => format!("int {min}..={max} (default {default})"),
            ParamKind::Bool { default } => format!("bool (default {default})"),
            ParamKind::Choice { default, choices } => {
                format!("one of {} (default {default})", choices.join("|"))
            }
        }
    }
}

impl ParamDesc {
    fn check(&self, v: &toml::Value) -> Result<ParamValue, String> {
        let key = self.name;
        match (self.kind, v) {
            (ParamKind::Int { min, max, .. }, toml::Value::Integer(i)) => {
                let ok = u64::try_from(*i).ok().filter(|x| (min..=max).contains(x));
                ok.map(ParamValue::Int)
                    .ok_or_else(|| format!("params.{key} = {i} is out of range {min}..={max}"))
            }
            (ParamKind::Bool { .. }, toml::Value::Boolean(b)) => Ok(ParamValue::Bool(*b)),
            (ParamKind::Choice { choices, .. }, toml::Value::String(s)) => choices
                .iter()
                .find(|c| **c == s.as_str())
                .map(|c| ParamValue::Choice(c))
                .ok_or_else(|| format!("params.{key} = \"{s}\" is not one of {}", choices.join(", "))),
            (kind, other) => Err(format!("params.{key} must be {}, got {other}", kind.describe())),
        }
    }
}

/// A resolved parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamValue {
    Int(u64),
    Bool(bool),
    Choice(&'static str),
}

/// Every parameter of a model, checked and with defaults filled in.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: BTreeMap<&'static str, ParamValue>,
}

impl Params {
    /// An integer parameter. Panics if the descriptor has no such integer: a
    /// programming error in the model, reported as a harness fault.
    pub fn int(&self, key: &str) -> u64 {
        match self.values.get(key) {
            Some(ParamValue::Int(v)) => *v,
            other => panic!("model reads integer param {key}, descriptor has {other:?}"),
        }
    }

    pub fn flag(&self, key: &str) -> bool {
        match self.values.get(key) {
            Some(ParamValue::Bool(v)) => *v,
            other => panic!("model reads bool param {key}, descriptor has {other:?}"),
        }
    }

    pub fn choice(&self, key: &str) -> &'static str {
        match self.values.get(key) {
            Some(ParamValue::Choice(v)) => v,
            other => panic!("model reads choice param {key}, descriptor has {other:?}"),
        }
    }

    /// Every value, for the resolved scenario and the summary.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, ParamValue)> + '_ {
        self.values.iter().map(|(k, v)| (*k, *v))
    }
}

/// What a model is built from.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub variant: &'static VariantDesc,
    pub threads: usize,
    pub params: Params,
}

impl std::fmt::Debug for ModelDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
