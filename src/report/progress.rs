//! Progress while a run goes: an indicatif bar on a terminal, a plain line every few
//! seconds otherwise, or nothing with `--quiet`.

use crate::engine::Observer;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Picks the progress display for stderr.
pub fn for_terminal(quiet: bool, limit: Option<Duration>, seed: u64) -> Box<dyn Observer> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bar::new(limit, seed))
    } else {
        Box::new(Lines {
            seed,
            every: Duration::from_secs(5),
            last: Instant::now(),
        })
    }
}

pub struct Silent;

impl Observer for Silent {
    fn tick(&mut self, _: Duration, _: u64, _: usize) {}
}

struct Bar {
    bar: ProgressBar,
    seed: u64,
}

impl Bar {
    fn new(limit: Option<Duration>, seed: u64) -> Self {
        let len = limit.map_or(0, |d| d.as_millis() as u64);
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .expect("valid template");
        bar.set_style(style);
        Bar { bar, seed }
    }
}

impl Observer for Bar {
    fn tick(&mut self, elapsed: Duration, ops: u64, violations: usize) {
        self.bar.set_position(elapsed.as_millis() as u64);
        let rate = ops as f64 / elapsed.as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{ops} ops, {rate:.0} ops/s, {violations} violations, seed {}",
            self.seed
        ));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

struct Lines {
    seed: u64,
    every: Duration,
    last: Instant,
}

impl Observer for Lines {
    fn tick(&mut self, elapsed: Duration, ops: u64, violations: usize) {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            let rate = ops as f64 / elapsed.as_secs_f64().max(1e-3);
            eprintln!(
                "kvmtorture: {:.0}s, {ops} ops, {rate:.0} ops/s, {violations} violations, seed {}",
                elapsed.as_secs_f64(),
                self.seed
            );
        }
    }
}
