//! `kvmtorture list`: models, their ops, params, coverage and variants (from the
//! descriptors), and the shipped scenarios.

use crate::cli::{Format, ListArgs};
use crate::error::{exit, Error};
use crate::model::{self, Expect, ModelDesc, ParamKind, VariantDesc};
use crate::scenario;
use serde_json::{json, Value};

pub fn list(a: &ListArgs) -> Result<i32, Error> {
    if a.format == Format::Ktap {
        return Err(crate::error::usage(
            "list has no KTAP form (it lists, it tests nothing): use --format human or json",
        ));
    }
    let scenarios = scenario::list(&scenario::scenarios_dir());
    let shown = |v: &&VariantDesc| a.all || !v.hidden();
    if a.format == Format::Json {
        let models: Vec<Value> = model::public().map(|m| model_json(m, &shown)).collect();
        let doc = json!({ "models": models, "scenarios": scenarios });
        crate::report::print_line(&serde_json::to_string_pretty(&doc).expect("json"));
        return Ok(exit::CLEAN);
    }
    let mut out = String::new();
    for m in model::public() {
        out += &format!("{} — {}\n", m.name, m.protocol);
        let ops: Vec<String> = m
            .ops
            .iter()
            .map(|o| format!("{}({}, {})", o.name, m.role_name(o.role), o.weight))
            .collect();
        out += &format!("  ops: {}\n", ops.join(" "));
        if !m.params.is_empty() {
            let ps: Vec<String> = m
                .params
                .iter()
                .map(|p| format!("{}={}", p.name, default_text(&p.kind)))
                .collect();
            out += &format!("  params: {}\n", ps.join(" "));
        }
        out += &format!(
            "  coverage: {} race windows; injection: {}\n",
            m.coverage.len(),
            m.injection.name()
        );
        for v in m.variants.iter().filter(shown) {
            out += &format!(
                "  {:<22} {:<11} {:<20} {:<16} {}\n",
                v.name,
                v.kind.name(),
                v.commit,
                expect_text(v.expect),
                v.doc
            );
            for c in v.cells {
                let ps: Vec<String> = c.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out += &format!(
                    "  {:<22} {:<11} {:<20} {}\n",
                    "",
                    "",
                    ps.join(","),
                    expect_text(c.expect)
                );
            }
        }
    }
    out += &format!("\nscenarios: {}", scenarios.join(", "));
    if !a.all {
        out += "\n(mutants and unconfirmed variants hidden: list --all)";
    }
    crate::report::print_line(&out);
    Ok(exit::CLEAN)
}

fn default_text(k: &ParamKind) -> String {
    match k {
        ParamKind::Int { default, .. } => default.to_string(),
        ParamKind::Bool { default } => default.to_string(),
        ParamKind::Choice { default, .. } => default.to_string(),
    }
}

/// `clean`, `caught:R1|R3`, `stall`.
pub fn expect_text(e: Expect) -> String {
    match e {
        Expect::Clean => "clean".into(),
        Expect::Caught(ids) => format!("caught:{}", ids.join("|")),
        Expect::Stall => "stall".into(),
        Expect::Unknown => "unconfirmed".into(),
    }
}

fn model_json(m: &ModelDesc, shown: &dyn Fn(&&VariantDesc) -> bool) -> Value {
    json!({
        "name": m.name,
        "protocol": m.protocol,
        "kernel_files": m.kernel_files,
        "seed": m.seed,
        "spec": m.spec,
        "injection": m.injection.name(),
        "roles": m.roles.iter().map(|r| json!({"name": r.name, "doc": r.doc})).collect::<Vec<_>>(),
        "ops": m.ops.iter().map(|o| json!({
            "name": o.name, "role": m.role_name(o.role), "weight": o.weight, "doc": o.doc,
        })).collect::<Vec<_>>(),
        "params": m.params.iter().map(|p| json!({
            "name": p.name, "type": p.kind.describe(), "default": default_text(&p.kind), "doc": p.doc,
        })).collect::<Vec<_>>(),
        "coverage": m.coverage.iter().map(|c| json!({"name": c.name, "doc": c.doc})).collect::<Vec<_>>(),
        "variants": m.variants.iter().filter(shown).map(|v| json!({
            "name": v.name,
            "commit": v.commit,
            "kind": v.kind.name(),
            "expect": expect_text(v.expect),
            "caught_by": v.expect.caught_by(),
            "needs_concurrency": v.needs_concurrency,
            "cells": v.cells.iter().map(|c| json!({
                "params": c.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "expect": expect_text(c.expect),
            })).collect::<Vec<_>>(),
            "doc": v.doc,
        })).collect::<Vec<_>>(),
    })
}
