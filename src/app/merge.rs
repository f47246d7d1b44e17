//! `kvmtorture merge`: one summary of results from many places (shards of a hunt on
//! several hosts, soak directories, plain run directories).
//!
//! Every directory is searched recursively. A directory with `hunt.json` is a hunt:
//! its seeds come from there (clean seeds leave no run directory) and it is not
//! searched further. A directory with `summary.json` is a run. Anything else (a
//! results, batch, soak or set directory) is searched. The same seed seen twice for
//! the same model, variant and mode counts once; a failure is listed once per run
//! directory.

use crate::cli::{Format, MergeArgs};
use crate::error::{exit, usage, Error};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// model/variant (mode).
type Key = (String, String, String);
/// Failures the human summary lists.
const MAX_LISTED: usize = 20;

#[derive(Default)]
struct Merged {
    hunts: usize,
    runs: usize,
    /// Runs whose summary still says `running`: the host died or was killed mid-run.
    unfinished: Vec<String>,
    seeds: BTreeMap<Key, BTreeSet<u64>>,
    ops: BTreeMap<Key, u64>,
    coverage: BTreeMap<String, BTreeMap<String, u64>>,
    /// (configuration, seed, run directory) → (status, invariant): sorted by seed,
    /// once per run directory.
    failures: BTreeMap<(Key, u64, String), (String, Option<String>)>,
}

fn read(p: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?;
    serde_json::from_str(&text).map_err(|e| usage(format!("malformed {}: {e}", p.display())))
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("?").to_string()
}

impl Merged {
    fn visit(&mut self, dir: &Path) -> Result<(), Error> {
        if dir.join("hunt.json").is_file() {
            return self.hunt(&read(&dir.join("hunt.json"))?);
        }
        if dir.join("summary.json").is_file() {
            return self.run(dir, &read(&dir.join("summary.json"))?);
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| usage(format!("cannot read directory {}: {e}", dir.display())))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        subs.iter().try_for_each(|s| self.visit(s))
    }

    fn failing(&self, k: &Key) -> usize {
        self.failures.keys().filter(|(fk, _, _)| fk == k).count()
    }

    fn add_coverage(&mut self, key: &Key, cov: &Value) {
        let e = self.coverage.entry(format!("{}/{}", key.0, key.1)).or_default();
        for (w, n) in cov.as_object().into_iter().flatten() {
            *e.entry(w.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }

    fn hunt(&mut self, h: &Value) -> Result<(), Error> {
        self.hunts += 1;
        let key = (text(h, "model"), text(h, "variant"), text(h, "mode"));
        let seeds = if h["ran"].is_array() {
            &h["ran"]
        } else {
            &h["tried"]
        };
        self.seeds
            .entry(key.clone())
            .or_default()
            .extend(seeds.as_array().into_iter().flatten().filter_map(Value::as_u64));
        *self.ops.entry(key.clone()).or_default() += h["ops_total"].as_u64().unwrap_or(0);
        self.add_coverage(&key, &h["coverage"]);
        for f in h["failing"].as_array().into_iter().flatten() {
            self.failures.insert(
                (key.clone(), f["seed"].as_u64().unwrap_or(0), text(f, "run_dir")),
                (text(f, "status"), f["invariant"].as_str().map(String::from)),
            );
        }
        Ok(())
    }

    fn run(&mut self, dir: &Path, s: &Value) -> Result<(), Error> {
        self.runs += 1;
        let key = (text(s, "model"), text(s, "variant"), text(s, "mode"));
        let status = text(s, "status");
        let dir_s = dir.display().to_string();
        if status == "running" {
            self.unfinished.push(dir_s);
            return Ok(());
        }
        let seed = s["seed"].as_u64().unwrap_or(0);
        if status != "interrupted" {
            self.seeds.entry(key.clone()).or_default().insert(seed);
        }
        *self.ops.entry(key.clone()).or_default() += s["ops_total"].as_u64().unwrap_or(0);
        self.add_coverage(&key, &s["coverage"]);
        if status != "clean" && status != "interrupted" {
            let inv = s["violations"][0]["invariant"].as_str().map(String::from);
            self.failures.insert((key, seed, dir_s), (status, inv));
        }
        Ok(())
    }
}

/// `1..100, 205, 300..301`.
pub fn ranges(seeds: &BTreeSet<u64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = seeds.iter().copied().peekable();
    while let Some(a) = it.next() {
        let mut b = a;
        while it.peek() == Some(&(b + 1)) {
            b = it.next().expect("peeked");
        }
        out.push(if a == b {
            a.to_string()
        } else {
            format!("{a}..{b}")
        });
    }
    out.join(", ")
}

pub fn merge(a: &MergeArgs) -> Result<i32, Error> {
    let mut m = Merged::default();
    for d in &a.dirs {
        if !d.is_dir() {
            return Err(usage(format!("{} is not a directory", d.display())));
        }
        m.visit(d)?;
    }
    if m.hunts + m.runs == 0 {
        return Err(usage("no run or hunt directories found"));
    }
    let total_ops: u64 = m.ops.values().sum();
    match a.format {
        Format::Json => {
            let per: Vec<Value> = m
                .seeds
                .iter()
                .map(|(k, s)| {
                    json!({"model": k.0, "variant": k.1, "mode": k.2, "seeds": s.len(),
                           "seed_ranges": ranges(s), "ops": m.ops.get(k).copied().unwrap_or(0),
                           "failures": m.failing(k)})
                })
                .collect();
            let failures: Vec<Value> = m
                .failures
                .iter()
                .map(|((k, seed, d), (st, inv))| {
                    json!({"model": k.0, "variant": k.1, "mode": k.2, "seed": seed,
                           "status": st, "invariant": inv, "run_dir": d})
                })
                .collect();
            print!(
                "{}",
                super::exec::to_json(&json!({
                    "hunts": m.hunts, "runs": m.runs, "ops_total": total_ops,
                    "configurations": per, "failures": failures,
                    "coverage": m.coverage, "unfinished": m.unfinished,
                }))
            );
        }
        Format::Ktap => {
            let cases: Vec<super::ktap::Case> = m
                .seeds
                .iter()
                .map(|(k, s)| {
                    let fails: Vec<String> = m
                        .failures
                        .iter()
                        .filter(|((fk, _, _), _)| fk == k)
                        .map(|((_, seed, d), (st, inv))| {
                            format!(
                                "seed {seed}: {st} {} run dir: {d}",
                                inv.clone().unwrap_or_default()
                            )
                        })
                        .collect();
                    let mut diag = vec![format!("{} seeds: {}", s.len(), ranges(s))];
                    diag.extend(fails.iter().cloned());
                    super::ktap::Case {
                        ok: fails.is_empty(),
                        name: format!("{}/{} {}", k.0, k.1, k.2),
                        skip: None,
                        diag,
                    }
                })
                .collect();
            print!("{}", super::ktap::document(&cases));
        }
        Format::Human => {
            println!(
                "merge: {} hunt(s), {} run(s) from {} director(ies), {total_ops} ops",
                m.hunts,
                m.runs,
                a.dirs.len()
            );
            println!("seeds tried (union):");
            for (k, s) in &m.seeds {
                println!(
                    "  {}/{} {}: {} seed(s) [{}], {} ops, {} failing",
                    k.0,
                    k.1,
                    k.2,
                    s.len(),
                    ranges(s),
                    m.ops.get(k).copied().unwrap_or(0),
                    m.failing(k)
                );
            }
            println!("failures: {}", m.failures.len());
            for ((k, seed, d), (st, inv)) in m.failures.iter().take(MAX_LISTED) {
                println!(
                    "  {}/{} {} seed {seed}: {st} {} → {d}",
                    k.0,
                    k.1,
                    k.2,
                    inv.clone().unwrap_or_default()
                );
            }
            if m.failures.len() > MAX_LISTED {
                println!(
                    "  ... {} more (`--format json` lists them all)",
                    m.failures.len() - MAX_LISTED
                );
            }
            println!("coverage (times entered):");
            for (model, ws) in &m.coverage {
                let w: Vec<String> = ws.iter().map(|(w, n)| format!("{w}={n}")).collect();
                println!("  {model}: {}", w.join(" "));
            }
            for d in &m.unfinished {
                println!("unfinished (summary still `running`): {d}");
            }
        }
    }
    Ok(if m.failures.is_empty() {
        exit::CLEAN
    } else {
        exit::VIOLATION
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_ranges_are_compressed() {
        let s = [1, 2, 3, 5, 7, 8].into_iter().collect();
        assert_eq!(super::ranges(&s), "1..3, 5, 7..8");
    }
}
