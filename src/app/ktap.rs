//! KTAP v1 documents (Documentation/dev-tools/ktap.rst, the format of kselftest
//! and KUnit): `KTAP version 1`, the plan `1..N`, one `ok N name` or `not ok N name`
//! per test, and `# ` diagnostic lines after it (what failed, where its run
//! directory is), so kernel CI tooling reads our results like a selftest's.

use super::set::Member;
use std::fmt::Write;

/// One test of a document.
pub struct Case {
    pub ok: bool,
    pub name: String,
    /// `# SKIP reason`: a test that did not run (an interrupted batch's rest).
    pub skip: Option<String>,
    pub diag: Vec<String>,
}

impl Case {
    /// A run of a set member: passes when clean.
    pub fn of_member(m: &Member) -> Case {
        let s = &m.ex.summary;
        let mut diag = vec![format!(
            "{}: {} ops in {:.2}s, {} of {} windows entered",
            s.status,
            s.ops_total,
            s.duration_s,
            s.coverage.values().filter(|n| **n > 0).count(),
            s.coverage.len()
        )];
        diag.extend(
            s.violations
                .first()
                .map(|v| format!("invariant {}: {}", v.invariant, v.message)),
        );
        diag.push(format!("run dir: {}", m.dir.display()));
        Case {
            ok: s.status == "clean",
            name: format!("{}/{} seed {}", s.model, s.variant, s.seed),
            skip: None,
            diag,
        }
    }
}

/// The header: version and plan.
pub fn header(n: usize) -> String {
    format!("KTAP version 1\n1..{n}\n")
}

/// The result line of test `number` (1-based) and its diagnostics.
pub fn case_lines(number: usize, c: &Case) -> String {
    let mut r = String::new();
    let ok = if c.ok || c.skip.is_some() { "ok" } else { "not ok" };
    // A test name must not contain `#` (it would start a directive).
    let name = c.name.replace('#', "");
    match &c.skip {
        Some(why) => {
            let _ = writeln!(r, "{ok} {number} {name} # SKIP {why}");
        }
        None => {
            let _ = writeln!(r, "{ok} {number} {name}");
        }
    }
    for d in &c.diag {
        for line in d.lines() {
            let _ = writeln!(r, "# {line}");
        }
    }
    r
}

/// A whole document.
pub fn document(cases: &[Case]) -> String {
    let mut r = header(cases.len());
    for (i, c) in cases.iter().enumerate() {
        r += &case_lines(i + 1, c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_plan_results_and_diagnostics() {
        let cases = [
            Case {
                ok: true,
                name: "a".into(),
                skip: None,
                diag: vec![],
            },
            Case {
                ok: false,
                name: "b#1".into(),
                skip: None,
                diag: vec!["invariant R3".into(), "run dir: x".into()],
            },
            Case {
                ok: false,
                name: "c".into(),
                skip: Some("interrupted".into()),
                diag: vec![],
            },
        ];
        assert_eq!(
            document(&cases),
            "KTAP version 1\n1..3\nok 1 a\nnot ok 2 b1\n# invariant R3\n# run dir: x\nok 3 c # SKIP interrupted\n"
        );
    }
}
