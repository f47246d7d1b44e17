//! Which run a command that reads runs (`again`, `replay`, `report`, `shrink`) acts
//! on: a run directory as given, or the failing run inside a hunt, batch or soak
//! directory (or, when there are several, a list to pick from).

use crate::error::{usage, Error};
use std::path::{Path, PathBuf};

/// `dir` if it is a run directory (it has `summary.json`); else the one failing run
/// below it (searched two levels deep, as batch and soak directories nest).
pub fn run_dir(dir: &Path) -> Result<PathBuf, Error> {
    if dir.join("summary.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let mut runs = Vec::new();
    collect(dir, 2, &mut runs);
    runs.sort();
    let failing: Vec<&PathBuf> = runs.iter().filter(|r| failed(r)).collect();
    match (failing.as_slice(), runs.as_slice()) {
        ([one], _) => Ok((*one).clone()),
        ([], [only]) => Ok(only.clone()),
        ([], []) => Err(usage(format!(
            "{} is neither a run directory (no summary.json) nor holds any",
            dir.display()
        ))),
        ([], _) => Err(usage(format!(
            "{} holds {} runs and none failed; pick one:\n  {}",
            dir.display(),
            runs.len(),
            list(&runs.iter().collect::<Vec<_>>())
        ))),
        (many, _) => Err(usage(format!(
            "{} holds {} failing runs; pick one:\n  {}",
            dir.display(),
            many.len(),
            list(many)
        ))),
    }
}

fn collect(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.join("summary.json").is_file() {
            out.push(p);
        } else if depth > 1 && p.is_dir() {
            collect(&p, depth - 1, out);
        }
    }
}

/// A run whose summary says it did not end clean (or never ended).
fn failed(run: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(run.join("summary.json")) else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    !matches!(v["status"].as_str(), Some("clean") | Some("interrupted"))
}

fn list(runs: &[&PathBuf]) -> String {
    runs.iter()
        .map(|r| r.display().to_string())
        .collect::<Vec<_>>()
        .join("\n  ")
}
