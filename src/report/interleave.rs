//! The interleaving of a det run, one column per thread, read top to bottom like the
//! CPU-A / CPU-B diagrams of kernel commit messages: each line is one scheduling
//! point (step number, then the site in the column of the thread that took it). A
//! thread's op is named when it starts a new one; repeated identical steps (a waiter
//! spinning) are folded into one line with a count.

use crate::sched::det::Step;
use std::fmt::Write;

const COL: usize = 44;

/// Renders `steps` (in order) for `threads` threads.
pub fn render(steps: &[Step], threads: usize) -> String {
    let mut r = String::new();
    let head: Vec<String> = (0..threads).map(|t| format!("thread {t}")).collect();
    row(
        &mut r,
        "step",
        &head.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let _ = writeln!(r, "{}", "-".repeat(9 + threads * (COL + 2)));
    let mut op_shown: Vec<Option<&str>> = vec![None; threads];
    let mut i = 0;
    while i < steps.len() {
        let s = steps[i];
        let mut n = 1;
        while steps
            .get(i + n)
            .is_some_and(|x| x.thread == s.thread && x.site == s.site && x.op == s.op)
        {
            n += 1;
        }
        if s.op != op_shown[s.thread] {
            op_shown[s.thread] = s.op;
            let head = s.op.map_or("(between ops)".to_string(), |o| format!("== {o} =="));
            line(&mut r, "", s.thread, threads, &head);
        }
        let file = s.loc.file().rsplit('/').next().unwrap_or("");
        let mut cell = format!("{} {file}:{}", s.site, s.loc.line());
        if s.spin {
            cell += " (wait)";
        }
        if n > 1 {
            cell += &format!(" x{n}");
        }
        line(&mut r, &s.step.to_string(), s.thread, threads, &cell);
        i += n;
    }
    r
}

fn line(r: &mut String, step: &str, thread: usize, threads: usize, cell: &str) {
    let cells: Vec<&str> = (0..threads)
        .map(|t| if t == thread { cell } else { "" })
        .collect();
    row(r, step, &cells);
}

fn row(r: &mut String, step: &str, cells: &[&str]) {
    let _ = write!(r, "{step:>8} ");
    for c in cells {
        let _ = write!(r, "| {c:<COL$}");
    }
    let trimmed = r.trim_end().len();
    r.truncate(trimmed);
    r.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_folding() {
        let st = |step, thread, site, spin| Step {
            step,
            thread,
            site,
            loc: std::panic::Location::caller(),
            op: Some("op"),
            spin,
        };
        let steps = [
            st(1, 0, "a", false),
            st(2, 1, "w", true),
            st(3, 1, "w", true),
            st(4, 0, "b", false),
        ];
        let out = render(&steps, 2);
        assert!(out.contains("(wait) x2"), "{out}");
        let b = out.lines().find(|l| l.contains("| b ")).unwrap();
        assert!(b.trim_start().starts_with('4'), "{out}");
    }
}
