//! KTAP (kselftest's "Kernel Test Anything Protocol") documents: a version line, a
//! plan, one `ok`/`not ok` line per test, `# ` diagnostics before the result they
//! explain — so kernel CI tooling reads kvmtorture like any kselftest.

/// One KTAP document being built.
pub struct Ktap {
    text: String,
    n: usize,
}

impl Ktap {
    /// A document with a plan of `tests` results.
    pub fn new(tests: usize) -> Ktap {
        Ktap {
            text: format!("KTAP version 1\n1..{tests}\n"),
            n: 0,
        }
    }

    /// Appends the next result, with its diagnostic lines first.
    pub fn result(&mut self, ok: bool, name: &str, diagnostics: &[String]) {
        self.n += 1;
        for d in diagnostics {
            for line in d.lines() {
                self.text += &format!("# {line}\n");
            }
        }
        let verdict = if ok { "ok" } else { "not ok" };
        self.text += &format!("{verdict} {} {name}\n", self.n);
    }

    pub fn finish(self) -> String {
        self.text
    }
}
