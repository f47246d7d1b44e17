//! The full interleaving of a det run (`--view full`): every scheduling point, one
//! column per worker. Each line is one step (its number, then the site and source
//! line in the column of the thread that took it); a thread's op is named when it
//! starts a new one; repeated identical steps (a waiter spinning) fold into one line
//! with a count. The protocol view ([`super::protocol`]) is the default.

use super::columns::{table, Row};
use crate::sched::det::Step;

/// Renders `steps` (in order) under the worker labels `labels`.
pub fn render(steps: &[Step], labels: &[String]) -> String {
    table(labels, &rows(steps, labels.len()))
}

fn rows(steps: &[Step], threads: usize) -> Vec<Row> {
    let mut out = Vec::new();
    let mut op_shown: Vec<Option<&str>> = vec![None; threads];
    let mut i = 0;
    while i < steps.len() {
        let s = steps[i];
        let mut n = 1;
        while steps
            .get(i + n)
            .is_some_and(|x| x.thread == s.thread && x.site == s.site && x.op == s.op && x.loc == s.loc)
        {
            n += 1;
        }
        if s.op != op_shown[s.thread] {
            op_shown[s.thread] = s.op;
            let head = s.op.map_or("(between ops)".to_string(), |o| format!("== {o} =="));
            out.push(Row {
                step: String::new(),
                col: Some(s.thread),
                text: head,
            });
        }
        let file = s.loc.file().rsplit('/').next().unwrap_or("");
        let mut cell = format!("{} {file}:{}", s.site, s.loc.line());
        if s.spin {
            cell += " (wait)";
        }
        if n > 1 {
            cell += &format!(" x{n}");
        }
        out.push(Row {
            step: s.step.to_string(),
            col: Some(s.thread),
            text: cell,
        });
        i += n;
    }
    out
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
        let out = render(&steps, &["w0 vCPU".into(), "w1 resizer".into()]);
        assert!(out.contains("(wait) x2"), "{out}");
        assert!(out.lines().next().unwrap().contains("w1 resizer"), "{out}");
        let b = out.lines().find(|l| l.contains("| b ")).unwrap();
        assert!(b.trim_start().starts_with('4'), "{out}");
    }
}
