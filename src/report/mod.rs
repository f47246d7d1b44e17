//! Results: one directory per run with `summary.json` (written before the run starts
//! and completed at the end) and, for a failure, `report.txt`; plus what goes to the
//! terminal.

pub mod columns;
pub mod interleave;
pub mod progress;
pub mod protocol;
mod summary;
mod text;

pub use summary::{hex, DetSummary, Summary};
pub use text::{failure_report, human_result, interleaving, ktap_result, thread_states, REPORT_ROWS};

use crate::error::Error;

/// How a det run's interleaving is shown (`--view`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    /// The protocol: named sites and the model's events, violations marked.
    #[default]
    Protocol,
    /// Every scheduling point, primitives included.
    Full,
}
use std::path::{Path, PathBuf};

/// Creates `<dir>/<model>-<variant>-<UTC time>-s<seed>` (suffixed if it exists).
pub fn create_run_dir(dir: &Path, model: &str, variant: &str, seed: u64) -> Result<PathBuf, Error> {
    let fault = |what: &str, p: &Path, e: std::io::Error| {
        Error::Fault(format!(
            "results directory {} is not writable ({what}: {e})",
            p.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fault("create", dir, e))?;
    let base = format!("{model}-{variant}-{}-s{seed}", utc_stamp());
    for n in 0.. {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let p = dir.join(name);
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fault("create", &p, e)),
        }
    }
    unreachable!("an unbounded counter always finds a free name")
}

/// Writes `text` to `dir/name` atomically (a temporary file renamed over it), so a
/// reader, a second Ctrl-C or a `kill -9` never sees half a file. Failure is a
/// harness fault.
pub fn write(dir: &Path, name: &str, text: &str) -> Result<(), Error> {
    let p = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &p))
        .map_err(|e| Error::Fault(format!("cannot write {}: {e}", p.display())))
}

/// `YYYYmmddTHHMMSSZ` for now, UTC, without a date crate (civil-from-days).
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Prints `s` and a newline to stdout. A closed stdout (`list --format json | head`)
/// ends the output quietly instead of panicking.
pub fn print_line(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamp_has_the_documented_shape() {
        let s = super::utc_stamp();
        assert_eq!(s.len(), 16, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z') && s.as_bytes()[8] == b'T');
    }
}
