//! `kvmtorture report RUN_DIR`: re-renders a finished run (like kvm-recheck.sh), in
//! the human form (summary plus `report.txt`), as JSON or as KTAP.

use super::exec;
use super::target;
use crate::cli::{Format, ReportArgs};
use crate::error::Error;
use crate::report::{self, Summary};

pub fn report(a: &ReportArgs) -> Result<i32, Error> {
    let dir = target::run_dir(&a.run_dir)?;
    let mut s: Summary = exec::read_json(&dir, "summary.json")?;
    if s.run_dir.is_empty() {
        s.run_dir = dir.display().to_string();
    }
    let text = match a.out.format {
        Format::Json => s.to_json(),
        Format::Ktap => report::ktap_result(&s),
        Format::Human => {
            let mut t = report::human_result(&s);
            if let Ok(r) = std::fs::read_to_string(dir.join("report.txt")) {
                t += "\n";
                t += &r;
            }
            t
        }
    };
    report::print_line(text.trim_end());
    Ok(s.exit_code
        .unwrap_or_else(|| exec::exit_code_of_status(&s.status)))
}
