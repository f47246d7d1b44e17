//! `kvmtorture list`: models, variants and scenarios.

use crate::cli::{Format, ListArgs};
use crate::error::{exit, Error};
use crate::{model, scenario};
use serde_json::json;

pub fn list(a: &ListArgs) -> Result<i32, Error> {
    let scenarios = scenario::list(&scenario::scenarios_dir());
    if a.format == Format::Json {
        let models: Vec<_> = model::registry()
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "summary": m.summary,
                    "variants": m.variants.iter().map(|v| json!({
                        "name": v.name,
                        "commit": v.commit,
                        "needs_concurrency": v.needs_concurrency,
                        "expect_violation": v.expect_violation,
                        "summary": v.summary,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = json!({ "models": models, "scenarios": scenarios });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        return Ok(exit::CLEAN);
    }
    for m in model::registry() {
        println!("{} — {}", m.name, m.summary);
        for v in m.variants {
            let kind = match (v.expect_violation, v.needs_concurrency) {
                (false, _) => "clean",
                (true, true) => "race",
                (true, false) => "sequential",
            };
            println!("  {:<20} {:<10} {:<14} {}", v.name, kind, v.commit, v.summary);
        }
    }
    println!("\nscenarios: {}", scenarios.join(", "));
    Ok(exit::CLEAN)
}
