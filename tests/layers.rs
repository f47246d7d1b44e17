//! The layering the design promises, checked from the sources: the model layer knows
//! no engine, scheduler, report or app, and no check code takes the variant.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn model_layer_names_no_engine_sched_report_or_app() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model"),
        &mut files,
    );
    assert!(files.len() > 10, "found only {} model sources", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for layer in ["crate::engine", "crate::sched", "crate::report", "crate::app"] {
                if code.contains(layer) {
                    bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "model code names another layer:\n{}",
        bad.join("\n")
    );
}

/// Check code takes no variant: the invariants read state, never which protocol
/// steps run (pfncache's `Protocol`, HPT's `Checks`) or the variant's name, so a
/// slip nobody made yet is caught by the same checks as a historical race.
#[test]
fn check_modules_never_read_the_variant_or_protocol_steps() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model"),
        &mut files,
    );
    let checks: Vec<_> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "check.rs"))
        .collect();
    assert!(checks.len() >= 2, "found only {} check modules", checks.len());
    let forbidden = [
        "self.proto",
        "self.checks",
        ".variant",
        "VariantDesc",
        "Protocol",
        "Checks",
        "Slips",
        "slips",
        "Lifecycle",
    ];
    let mut bad = Vec::new();
    for f in checks {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if let Some(word) = forbidden.iter().find(|w| code.contains(*w)) {
                bad.push(format!("{}:{}: `{word}` in {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "check code reads the variant:\n{}",
        bad.join("\n")
    );
}
