//! Sweeps: the grid of referenced sweep axes, one program per cell, `--set axis=label`
//! narrowing an axis to one cell.

use std::collections::BTreeMap;

use super::params;
use super::program::Program;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{self, Span};
use crate::syntax::ast::{Expr, ExprKind};
use crate::syntax::SourceMap;

/// The most cells a sweep may expand into.
pub const MAX_CELLS: usize = 10_000;

impl Program {
    pub fn expand(
        &self,
        axis_overrides: &[(String, Expr, String)],
        sources: &SourceMap,
        main_file: ir::FileId,
        diags: &mut Vec<Diagnostic>,
    ) -> Vec<(Vec<(String, String)>, Program)> {
        let mut referenced: BTreeMap<String, Span> = BTreeMap::new();
        self.for_each_expr(&mut |expr| {
            if let ExprKind::Var(name) = &expr.kind {
                referenced.entry(name.clone()).or_insert(expr.span);
            }
        });
        // A referenced sweep's values may refer to further sweeps.
        loop {
            let mut added = false;
            for sweep in &self.sweeps {
                if referenced.contains_key(&sweep.name.text) {
                    sweep.value.walk(&mut |expr| {
                        if let ExprKind::Var(name) = &expr.kind {
                            if !referenced.contains_key(name) {
                                referenced.insert(name.clone(), expr.span);
                                added = true;
                            }
                        }
                    });
                }
            }
            if !added {
                break;
            }
        }
        for (name, span) in &referenced {
            if !self.sweeps.iter().any(|s| &s.name.text == name) {
                let diagnostic = Diagnostic::error(
                    "fa::resolve::unknown_variable",
                    *span,
                    format!("no sweep named `{name}`"),
                    "not a sweep",
                );
                let help = did_you_mean(name, self.sweeps.iter().map(|s| s.name.text.as_str()))
                    .unwrap_or_else(|| {
                        format!("declare it: sweep {name} = {{ label: value, ... }}")
                    });
                diags.push(diagnostic.with_help(help));
            }
        }
        let mut axes: Vec<(String, Vec<(String, Expr)>)> = Vec::new();
        for sweep in &self.sweeps {
            if !referenced.contains_key(&sweep.name.text) {
                if sweep.main {
                    diags.push(
                        Diagnostic::warning(
                            "fa::resolve::unused_sweep",
                            sweep.name.span,
                            format!("sweep `{}` is never used", sweep.name.text),
                            "never referenced",
                        )
                        .with_help(format!(
                            "refer to it as `${}` where the value varies",
                            sweep.name.text
                        )),
                    );
                }
                continue;
            }
            let mut values: Vec<(String, Expr)> = match &sweep.value.kind {
                ExprKind::Record(record) => record
                    .entries
                    .iter()
                    .map(|e| (e.key.text.clone(), e.value.clone()))
                    .collect(),
                ExprKind::List(items) => items
                    .iter()
                    .map(|e| (sources.snippet(e.span).to_string(), e.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            if values.is_empty() {
                diags.push(Diagnostic::error(
                    "fa::resolve::sweep_empty",
                    sweep.value.span,
                    format!("sweep `{}` has no values", sweep.name.text),
                    "empty",
                ));
                continue;
            }
            for (axis, value, text) in axis_overrides {
                if axis != &sweep.name.text {
                    continue;
                }
                if let Some(found) = values.iter().find(|(label, _)| label == text).cloned() {
                    values = vec![found];
                } else if matches!(&sweep.value.kind, ExprKind::Record(_)) {
                    let labels: Vec<&str> = values.iter().map(|(l, _)| l.as_str()).collect();
                    let diagnostic = Diagnostic::error(
                        "fa::resolve::sweep_label",
                        value.span,
                        format!("sweep `{axis}` has no cell `{text}`"),
                        "unknown label",
                    );
                    let help = did_you_mean(text, labels.iter().copied()).unwrap_or_else(|| {
                        format!("its labels are {}", params::quote_list(&labels))
                    });
                    diags.push(diagnostic.with_help(help));
                } else {
                    values = vec![(text.clone(), value.clone())];
                }
            }
            axes.push((sweep.name.text.clone(), values));
        }
        let _ = main_file;
        // Counted before the grid is built: a sweep of 10^8 cells would exhaust the memory
        // before any cell could be reported.
        let count = axes
            .iter()
            .try_fold(1usize, |count, (_, values)| count.checked_mul(values.len()));
        if count.is_none_or(|count| count > MAX_CELLS) {
            let span = self
                .sweeps
                .iter()
                .find(|sweep| Some(&sweep.name.text) == axes.first().map(|(name, _)| name))
                .map_or(Span::default(), |sweep| sweep.name.span);
            let sizes: Vec<String> = axes
                .iter()
                .map(|(name, values)| format!("{name}: {}", values.len()))
                .collect();
            let count = count.map_or("more than 2^64".to_string(), |count| count.to_string());
            diags.push(
                Diagnostic::error(
                    "fa::resolve::sweep_too_large",
                    span,
                    format!(
                        "the sweep has {count} cells ({}), more than the {MAX_CELLS} fa expands",
                        sizes.join(", ")
                    ),
                    "one axis of the grid",
                )
                .with_help("narrow an axis to one value with --set AXIS=LABEL, or split the sweep over several files"),
            );
        }
        if diags.iter().any(Diagnostic::is_error) {
            return Vec::new();
        }
        let mut cells: Vec<Vec<usize>> = vec![Vec::new()];
        for (_, values) in &axes {
            cells = cells
                .into_iter()
                .flat_map(|prefix| {
                    (0..values.len()).map(move |i| [prefix.clone(), vec![i]].concat())
                })
                .collect();
        }
        cells
            .into_iter()
            .map(|choice| {
                let labels: Vec<(String, String)> = axes
                    .iter()
                    .zip(&choice)
                    .map(|((axis, values), &i)| (axis.clone(), values[i].0.clone()))
                    .collect();
                let lookup: BTreeMap<&str, &Expr> = axes
                    .iter()
                    .zip(&choice)
                    .map(|((axis, values), &i)| (axis.as_str(), &values[i].1))
                    .collect();
                let mut program = self.clone();
                program.for_each_expr_mut(&mut |expr| {
                    expr.substitute(&|name| lookup.get(name).map(|e| (*e).clone()))
                });
                (labels, program)
            })
            .collect()
    }
}
