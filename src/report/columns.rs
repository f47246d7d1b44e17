//! The column table both interleaving views print: a step number, then one column per
//! worker, read top to bottom like the CPU0 / CPU1 drawings of kernel commit messages.

pub use crate::model::event_text;
use std::fmt::Write;

/// Width of a worker's column; a longer cell pushes the cells to its right, which is
/// harmless because a row has one non-empty cell.
pub const COL: usize = 40;

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Shown in the step column (empty for headers and events between steps).
    pub step: String,
    /// The worker's column; `None` spans the table (a whole-model check).
    pub col: Option<usize>,
    pub text: String,
}

/// Renders `rows` under the column labels `head`.
pub fn table(head: &[String], rows: &[Row]) -> String {
    let mut r = String::new();
    line(
        &mut r,
        "step",
        &head.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let _ = writeln!(r, "{}", "-".repeat(9 + head.len() * (COL + 2)));
    for x in rows {
        match x.col {
            Some(c) => {
                let cells: Vec<&str> = (0..head.len())
                    .map(|t| if t == c { x.text.as_str() } else { "" })
                    .collect();
                line(&mut r, &x.step, &cells);
            }
            None => {
                let _ = writeln!(r, "{:>8} | {}", x.step, x.text);
            }
        }
    }
    r
}

fn line(r: &mut String, step: &str, cells: &[&str]) {
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
    fn event_formats_fill_in_arguments() {
        assert_eq!(
            event_text("H_ENTER hpte {a} gfn {b}", 12, 3),
            "H_ENTER hpte 12 gfn 3"
        );
        assert_eq!(event_text("gpa={a:x}", 0x2000, 0), "gpa=0x2000");
        assert_eq!(event_text("commit.done", 0, 0), "commit.done");
        assert_eq!(event_text("x", 1, 0), "x a=0x1 b=0x0");
    }

    #[test]
    fn one_cell_per_row_in_its_column() {
        let head = vec!["w0 vCPU".to_string(), "w1 resizer".to_string()];
        let rows = [
            Row {
                step: "1".into(),
                col: Some(1),
                text: "b".into(),
            },
            Row {
                step: "2".into(),
                col: None,
                text: "all".into(),
            },
        ];
        let t = table(&head, &rows);
        let b = t.lines().find(|l| l.ends_with("| b")).unwrap();
        assert!(b.contains(&format!("|{}| b", " ".repeat(COL + 1))), "{t}");
        assert!(t.contains("       2 | all"), "{t}");
    }
}
