//! Scenario sets: several models tortured at once in one process.
//!
//! A set is what `run` executes: one scenario (the usual case), the models of a file
//! with `[[model]]` tables, or [`ALL_FIXED`] — every fixed variant of every public
//! model, taken from the registry so a new model joins it with no change here. Each
//! member is an ordinary validated [`Scenario`]; this module only splits the threads
//! and shares the file's top-level settings among them.
//!
//! ```toml
//! description = "hpt and pfncache together"
//! threads = 16          # the total, split across the models without their own
//! duration = "60s"
//! [[model]]
//! model = "hpt"
//! [model.params]
//! order_small = 8
//! [[model]]
//! model = "pfncache"
//! threads = 4
//! ```

use crate::duration;
use crate::error::{usage, Error};
use crate::model::{self, VariantKind};
use crate::scenario::{self, Overrides, Scenario, ScenarioFile};
use std::path::Path;
use std::time::Duration;

/// The name of the built-in set of every fixed model (what `run` runs with no argument).
pub const ALL_FIXED: &str = "all-fixed";
/// Budget of the built-in set when no flag says.
pub const ALL_FIXED_DURATION: Duration = Duration::from_secs(60);
/// Fewest threads one model of a set gets by default.
const MIN_THREADS_PER_MODEL: usize = 4;

/// Validated scenarios that run at the same time.
#[derive(Debug, Clone)]
pub struct ScenarioSet {
    pub name: String,
    pub members: Vec<Scenario>,
}

impl ScenarioSet {
    pub fn single(sc: Scenario) -> ScenarioSet {
        ScenarioSet {
            name: sc.name.clone(),
            members: vec![sc],
        }
    }

    pub fn is_multi(&self) -> bool {
        self.members.len() > 1
    }

    pub fn threads(&self) -> usize {
        self.members.iter().map(|m| m.threads).sum()
    }
}

/// `name` (a scenario, a `[[model]]` file or [`ALL_FIXED`]), or `--model` flags, or
/// the built-in set when neither is given; the overrides apply to every member, with
/// `threads` as the total.
pub fn load(name: Option<&str>, o: &Overrides) -> Result<ScenarioSet, Error> {
    match (name, &o.model) {
        (None, None) => all_fixed(o),
        (None, Some(_)) => Ok(ScenarioSet::single(scenario::resolve(None, o)?)),
        (Some(ALL_FIXED), _) if scenario::named_text(ALL_FIXED).is_err() => all_fixed(o),
        (Some(n), _) => {
            let (path, text, _) = scenario::named_text(n)?;
            let table = read_table(&path, &text)?;
            if matches!(table.get("model"), Some(toml::Value::Array(_))) {
                from_tables(&path, table, o)
            } else {
                let (path, file) = scenario::load_named(n)?;
                Ok(ScenarioSet::single(scenario::resolve(Some((&path, file)), o)?))
            }
        }
    }
}

/// Every `Fixed` variant of every public model, each from its shipped scenario
/// (`<model>-<variant>.toml`, tuned so the windows are entered) when there is one;
/// `--threads` is split across them.
pub fn all_fixed(o: &Overrides) -> Result<ScenarioSet, Error> {
    if o.model.is_some() || o.variant.is_some() || !o.param_flags.is_empty() {
        return Err(usage(format!(
            "`{ALL_FIXED}` runs every fixed model: --model, --variant and --param need a single scenario"
        )));
    }
    let pairs: Vec<(&str, &str)> = model::public()
        .flat_map(|m| {
            m.variants
                .iter()
                .filter(|v| v.kind == VariantKind::Fixed)
                .map(move |v| (m.name, v.name))
        })
        .collect();
    // `--threads` is the total; without it each model keeps its scenario's count
    // (tuned so its windows are entered), as if it ran alone.
    let shares: Vec<Option<usize>> = match o.threads {
        Some(t) => split(Some(t), &vec![None; pairs.len()])
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; pairs.len()],
    };
    let mut members = Vec::new();
    for ((m, v), threads) in pairs.into_iter().zip(shares) {
        let mo = Overrides {
            model: Some(m.into()),
            variant: Some(v.into()),
            threads,
            duration: o.duration.or(o.ops.is_none().then_some(ALL_FIXED_DURATION)),
            ..o.clone()
        };
        let sc = match scenario::load_named(&format!("{m}-{v}")) {
            Ok((path, file)) => scenario::resolve(Some((&path, file)), &mo)?,
            Err(_) => scenario::resolve(None, &mo)?,
        };
        members.push(sc);
    }
    Ok(ScenarioSet {
        name: ALL_FIXED.into(),
        members,
    })
}

fn read_table(path: &Path, text: &str) -> Result<toml::Table, Error> {
    text.parse()
        .map_err(|e| usage(format!("malformed scenario {}: {e}", path.display())))
}

/// A `[[model]]` file: each table, over the file's top-level settings, is one member.
fn from_tables(path: &Path, mut top: toml::Table, o: &Overrides) -> Result<ScenarioSet, Error> {
    let here = |msg: String| usage(format!("scenario {}: {msg}", path.display()));
    if o.model.is_some() || o.variant.is_some() || !o.param_flags.is_empty() {
        return Err(here(
            "lists several models: --model, --variant and --param need a single scenario".into(),
        ));
    }
    let Some(toml::Value::Array(entries)) = top.remove("model") else {
        unreachable!("from_tables is only called on a [[model]] file")
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario")
        .to_string();
    top.remove("description");
    let total = top
        .remove("threads")
        .map(|t| as_threads(&t).map_err(&here))
        .transpose()?;
    let mut tables = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let toml::Value::Table(mut t) = e else {
            return Err(here(format!("model entry {} must be a [[model]] table", i + 1)));
        };
        for (k, v) in &top {
            t.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let own = t
            .remove("threads")
            .map(|x| as_threads(&x).map_err(&here))
            .transpose()?;
        tables.push((t, own));
    }
    let own: Vec<Option<usize>> = tables.iter().map(|(_, n)| *n).collect();
    let shares = split(o.threads.or(total), &own);
    let mut members = Vec::new();
    for ((t, _), threads) in tables.into_iter().zip(shares) {
        let file: ScenarioFile = toml::Value::Table(t)
            .try_into()
            .map_err(|e| here(format!("in a [[model]] table: {e}")))?;
        let mo = Overrides {
            threads: Some(threads),
            ..o.clone()
        };
        let mut sc = scenario::resolve(Some((path, file)), &mo)?;
        sc.name = format!("{stem}.{}", sc.model.name);
        // A member alone is not this file: its replay command names the model.
        sc.path = None;
        members.push(sc);
    }
    if members.is_empty() {
        return Err(here("has no [[model]] tables".into()));
    }
    Ok(ScenarioSet { name: stem, members })
}

fn as_threads(v: &toml::Value) -> Result<usize, String> {
    v.as_integer()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("threads must be a positive integer, got {v}"))
}

/// Threads per member: a member's own count stands; the rest of `total` (default:
/// [`scenario::DEFAULT_THREADS`], at least [`MIN_THREADS_PER_MODEL`] per member) is
/// shared evenly among the others, the remainder going to the first ones.
pub fn split(total: Option<usize>, own: &[Option<usize>]) -> Vec<usize> {
    let free = own.iter().filter(|n| n.is_none()).count();
    let fixed: usize = own.iter().flatten().sum();
    let total = total.unwrap_or_else(|| scenario::DEFAULT_THREADS.max(fixed + MIN_THREADS_PER_MODEL * free));
    let left = total.saturating_sub(fixed);
    let (each, extra) = match free {
        0 => (0, 0),
        n => (left / n, left % n),
    };
    let mut k = 0;
    own.iter()
        .map(|n| {
            n.unwrap_or_else(|| {
                k += 1;
                (each + usize::from(k <= extra)).max(1)
            })
        })
        .collect()
}

/// A readable budget of a set for its start line.
pub fn budget_text(s: &ScenarioSet) -> String {
    let m = &s.members[0];
    match (m.duration, m.ops) {
        (Some(d), _) => duration::format(d),
        (None, Some(n)) => format!("{n} ops/worker"),
        (None, None) => "unbounded".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_shares_the_total_and_keeps_own_counts() {
        assert_eq!(split(Some(16), &[None, None]), vec![8, 8]);
        assert_eq!(split(Some(7), &[None, None, None]), vec![3, 2, 2]);
        assert_eq!(split(Some(10), &[Some(4), None]), vec![4, 6]);
        assert_eq!(split(Some(2), &[None, None, None]), vec![1, 1, 1]);
        assert_eq!(split(None, &[None; 5]), vec![4; 5]);
    }

    #[test]
    fn all_fixed_holds_every_public_fixed_variant() {
        let set = all_fixed(&Overrides::default()).unwrap();
        let want = model::public()
            .flat_map(|m| m.variants.iter().filter(|v| v.kind == VariantKind::Fixed))
            .count();
        assert_eq!(set.members.len(), want);
        assert!(set.members.iter().all(|m| m.duration == Some(ALL_FIXED_DURATION)));
    }
}
