//! The protocol view of a det run: what a kernel commit message would draw.
//!
//! Post-processing of what the run recorded — the scheduler's steps and the flight
//! recorder's op begins, op arguments and events, both stamped with step numbers —
//! keeping only the protocol: the race-window and protocol points a model names
//! (`crate::window!`/`crate::point!` and its own waits) and the model's events with
//! their arguments. The synchronisation primitives' own steps (`atomic.load`,
//! `spin.trylock`, …) and the steps between ops are left out (`--view full` shows
//! them). Repeats of one site by one thread fold into one row with a count, op
//! headers carry the op's arguments, and a `<-- VIOLATION` row stands where the
//! invariant failed.
//!
//! An entry stamped `t` happened after step `t` and before step `t + 1`, so the two
//! streams merge without ambiguity: between two steps only one thread runs.

use super::columns::{event_text, Row};
use crate::engine::recorder::{Entry, Kind};
use crate::engine::Outcome;
use crate::sched::det::Step;

/// A violation to mark: where it was found, by whom, and the row's text.
#[derive(Debug, Clone)]
pub struct Mark {
    pub step: u64,
    pub worker: Option<usize>,
    pub text: String,
}

/// What a det run recorded, as the views read it.
#[derive(Debug, Clone)]
pub struct Trace<'a> {
    /// Scheduling steps, in order (possibly only the last ones of a long run).
    pub steps: &'a [Step],
    /// Each worker's flight-recorder entries, oldest first.
    pub entries: Vec<Vec<Entry>>,
    pub marks: Vec<Mark>,
    /// Column labels, one per worker.
    pub labels: Vec<String>,
}

impl<'a> Trace<'a> {
    /// The trace of a det run (`None` for stress runs).
    pub fn of(o: &'a Outcome) -> Option<Trace<'a>> {
        let d = o.det.as_ref()?;
        let workers = o.recorder.workers();
        Some(Trace {
            steps: &d.tail,
            entries: (0..workers).map(|w| o.recorder.snapshot(w).1).collect(),
            marks: o
                .found
                .iter()
                .filter_map(|f| {
                    Some(Mark {
                        step: f.step?,
                        worker: f.worker,
                        text: format!("<-- VIOLATION {}: {}", f.violation.invariant, f.violation.message),
                    })
                })
                .collect(),
            labels: if o.worker_labels.len() == workers {
                o.worker_labels.clone()
            } else {
                (0..workers).map(|w| format!("w{w}")).collect()
            },
        })
    }

    /// The first step from which every worker's events are still in its ring: before
    /// it, a view would show steps without the events between them.
    pub fn events_from(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.len() >= crate::engine::recorder::RING)
            .filter_map(|e| e.first().map(|x| x.t_ns + 1))
            .max()
            .unwrap_or(0)
    }
}

/// Whether a step is part of the protocol view: a site the model named, inside an op.
fn shown(s: &Step) -> bool {
    s.op.is_some() && !crate::sync::is_primitive_site(s.site)
}

/// One item of the merged timeline.
enum Item<'t> {
    Step(&'t Step),
    /// Worker, entry index in its list.
    Entry(usize, usize),
    Mark(&'t Mark),
}

/// The protocol view's rows for the steps numbered `from` and later.
pub fn rows(t: &Trace, from: u64) -> Vec<Row> {
    let mut items: Vec<(u64, u8, usize, Item)> = Vec::new();
    for s in t.steps.iter().filter(|s| s.step >= from) {
        // A step comes before the entries stamped with its number.
        items.push((s.step, 0, 0, Item::Step(s)));
    }
    for (w, list) in t.entries.iter().enumerate() {
        for (i, e) in list.iter().enumerate() {
            if e.t_ns + 1 >= from {
                items.push((e.t_ns, 1, w, Item::Entry(w, i)));
            }
        }
    }
    for m in &t.marks {
        items.push((m.step, 2, m.worker.unwrap_or(usize::MAX), Item::Mark(m)));
    }
    // Stable: entries of one worker keep their recorded order.
    items.sort_by_key(|(t, rank, w, _)| (*t, *rank, *w));

    let mut out = Rows::default();
    let mut headed: Vec<bool> = vec![false; t.labels.len()];
    for (_, _, _, item) in items {
        match item {
            Item::Step(s) => {
                if !shown(s) {
                    continue;
                }
                if !headed[s.thread] {
                    // The op began before the view's first step.
                    headed[s.thread] = true;
                    let op = s.op.unwrap_or("?");
                    out.push(None, s.thread, format!("== {op} (already running) =="));
                }
                let text = if s.spin {
                    format!("{} (wait)", s.site)
                } else {
                    s.site.to_string()
                };
                out.site(s.step, s.thread, text);
            }
            Item::Entry(w, i) => {
                let e = &t.entries[w][i];
                match e.kind {
                    Kind::Begin => {
                        headed[w] = true;
                        let args = op_args(&t.entries[w][i + 1..]);
                        let head = match args {
                            Some(a) => format!("== {} {} ==", e.what, event_text(a.what, a.a, a.b)),
                            None => format!("== {} ==", e.what),
                        };
                        out.push(None, w, head);
                    }
                    Kind::Event => out.push(None, w, event_text(e.what, e.a, e.b)),
                    Kind::End | Kind::Failed | Kind::Args => {}
                }
            }
            Item::Mark(m) => out.rows.push(Row {
                step: m.step.to_string(),
                col: m.worker,
                text: m.text.clone(),
            }),
        }
    }
    out.rows
}

/// The op's argument entry: the first `Args` before the op ends.
fn op_args(after_begin: &[Entry]) -> Option<&Entry> {
    after_begin
        .iter()
        .take_while(|e| !matches!(e.kind, Kind::Begin | Kind::End | Kind::Failed))
        .find(|e| matches!(e.kind, Kind::Args))
}

/// Rows under construction. A thread's consecutive sites share one row (`· a → b
/// x3 → c`): a row ends when another thread shows something or the thread has an
/// event.
#[derive(Default)]
struct Rows {
    rows: Vec<Row>,
    /// The last row if it is a site row: its thread and its sites with counts.
    open: Option<(usize, Vec<(String, u64)>)>,
}

impl Rows {
    fn push(&mut self, step: Option<u64>, col: usize, text: String) {
        self.open = None;
        self.rows.push(Row {
            step: step.map_or(String::new(), |s| s.to_string()),
            col: Some(col),
            text,
        });
    }

    fn site(&mut self, step: u64, col: usize, text: String) {
        match &mut self.open {
            Some((c, sites)) if *c == col => {
                match sites.last_mut() {
                    Some((t, n)) if *t == text => *n += 1,
                    _ => sites.push((text, 1)),
                }
                let joined: Vec<String> = sites
                    .iter()
                    .map(|(t, n)| if *n > 1 { format!("{t} x{n}") } else { t.clone() })
                    .collect();
                let row = self.rows.last_mut().expect("an open site row");
                row.text = format!("· {}", joined.join(" → "));
            }
            _ => {
                self.push(Some(step), col, format!("· {text}"));
                self.open = Some((col, vec![(text, 1)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64, thread: usize, site: &'static str) -> Step {
        Step {
            step,
            thread,
            site,
            loc: std::panic::Location::caller(),
            op: Some("op"),
            spin: false,
        }
    }

    fn entry(t_ns: u64, kind: Kind, what: &'static str, a: u64, b: u64) -> Entry {
        Entry {
            t_ns,
            kind,
            what,
            a,
            b,
        }
    }

    #[test]
    fn keeps_named_sites_and_events_folds_repeats_and_marks_the_violation() {
        let steps = [
            step(1, 0, "atomic.load"),
            step(2, 0, "x.window"),
            step(3, 1, "spin.trylock"),
            step(4, 1, "y.rehash"),
            step(5, 1, "atomic.load"),
            step(6, 1, "y.rehash"),
            step(7, 1, "y.done"),
            step(8, 0, "x.after"),
        ];
        let t = Trace {
            steps: &steps,
            entries: vec![
                vec![
                    entry(0, Kind::Begin, "run", 0, 0),
                    entry(0, Kind::Args, "vcpu {a}", 2, 0),
                    entry(8, Kind::Event, "H_ENTER hpte {a} gfn {b}", 12, 3),
                    entry(8, Kind::Failed, "run", 1, 0),
                ],
                vec![entry(2, Kind::Begin, "commit", 0, 0)],
            ],
            marks: vec![Mark {
                step: 8,
                worker: Some(0),
                text: "<-- VIOLATION R3: boom".into(),
            }],
            labels: vec!["w0 vCPU".into(), "w1 resizer".into()],
        };
        let texts: Vec<(Option<usize>, String)> = rows(&t, 0).into_iter().map(|r| (r.col, r.text)).collect();
        let want = [
            (Some(0), "== run vcpu 2 =="),
            (Some(0), "· x.window"),
            (Some(1), "== commit =="),
            (Some(1), "· y.rehash x2 → y.done"),
            (Some(0), "· x.after"),
            (Some(0), "H_ENTER hpte 12 gfn 3"),
            (Some(0), "<-- VIOLATION R3: boom"),
        ];
        let want: Vec<(Option<usize>, String)> = want.iter().map(|(c, s)| (*c, s.to_string())).collect();
        assert_eq!(texts, want);
    }
}
