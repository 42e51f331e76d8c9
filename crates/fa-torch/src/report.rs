//! The reproduction page's tables, rebuilt from the `summary.json` of every run, so that
//! `docs/reproduction.md` cannot drift from the runs it reports.
//!
//! The runs live under one folder (`docs/reproduction/` holds the committed summaries), in
//! any layout: every `summary.json` below it is read and grouped by its cell name. A list of
//! the paper's figures (`paper.tsv`) orders the rows and puts the paper's number beside each
//! of ours. A difference to the sweep's first row counts as real when it exceeds twice the
//! standard error of the difference; its reading then says whether it has the paper's sign.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::train::Summary;

/// One row of the paper's figures: the sweep it belongs to, our cell's name, and the
/// paper's cell with its top-1 accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct PaperRow {
    pub sweep: String,
    pub cell: String,
    pub paper_cell: String,
    pub paper_top1: f64,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReportError {
    #[error("cannot read {}: {source}", .path.display())]
    #[diagnostic(code(fa::io))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a run summary: {source}", .path.display())]
    #[diagnostic(code(fa::usage))]
    NotASummary {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("line {line} of {}: expected sweep, cell, paper cell and top-1 separated by tabs", .path.display())]
    #[diagnostic(code(fa::usage))]
    PaperLine { path: PathBuf, line: usize },
    #[error("{} records no commit: it was not written by a build that knows its sources", .path.display())]
    #[diagnostic(code(fa::usage))]
    NoCommit { path: PathBuf },
}

/// Reads `paper.tsv`: `sweep<TAB>cell<TAB>paper cell<TAB>top-1`, `#` comments.
pub fn read_paper(path: &Path) -> Result<Vec<PaperRow>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || ReportError::PaperLine {
            path: path.to_path_buf(),
            line: index + 1,
        };
        let [sweep, cell, paper_cell, top1] = fields[..] else {
            return Err(bad());
        };
        rows.push(PaperRow {
            sweep: sweep.to_string(),
            cell: cell.to_string(),
            paper_cell: paper_cell.to_string(),
            paper_top1: top1.parse().map_err(|_| bad())?,
        });
    }
    Ok(rows)
}

/// Every `summary.json` below `root`, by cell name, in file-name order.
pub fn read_summaries(root: &Path) -> Result<BTreeMap<String, Vec<Summary>>, ReportError> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|source| ReportError::Io {
            path: folder.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|name| name == "summary.json") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut cells: BTreeMap<String, Vec<Summary>> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        let summary: Summary =
            serde_json::from_str(&text).map_err(|source| ReportError::NotASummary {
                path: path.clone(),
                source,
            })?;
        if summary.commit.is_empty() || summary.commit == "unknown" {
            return Err(ReportError::NoCommit { path });
        }
        cells
            .entry(summary.model.clone())
            .or_default()
            .push(summary);
    }
    Ok(cells)
}

/// Mean and standard error of the mean (0 for one value).
fn mean_se(values: &[f64]) -> Option<(f64, f64)> {
    let (mean, std) = crate::train::table::mean_std(values)?;
    Some((mean, std / (values.len() as f64).sqrt()))
}

fn cell(values: &[f64]) -> String {
    match crate::train::table::mean_std(values) {
        Some((mean, std)) if values.len() > 1 => format!("{mean:.2} ± {std:.2}"),
        Some((mean, _)) => format!("{mean:.2}"),
        None => "–".into(),
    }
}

/// How a difference of means compares: real when beyond twice its standard error, then
/// with or against the paper's sign.
fn reading(ours: &[f64], base: &[f64], paper_difference: f64) -> (String, String) {
    let (Some((mean, se)), Some((base_mean, base_se))) = (mean_se(ours), mean_se(base)) else {
        return ("–".into(), "–".into());
    };
    let difference = mean - base_mean;
    if ours.len() < 2 || base.len() < 2 {
        // One run has no spread to measure: the difference is shown, not judged.
        return (format!("{difference:+.2}"), "too few seeds".into());
    }
    let se = (se * se + base_se * base_se).sqrt();
    let text = format!("{difference:+.2} ± {se:.2}");
    let verdict = if difference.abs() <= 2.0 * se {
        "within noise"
    } else if paper_difference == 0.0 {
        "paper: no change"
    } else if difference.signum() == paper_difference.signum() {
        "holds"
    } else {
        "opposite"
    };
    (text, verdict.into())
}

/// The markdown table of `sweep`: one row per paper row, the first being the baseline.
pub fn table(sweep: &str, paper: &[PaperRow], runs: &BTreeMap<String, Vec<Summary>>) -> String {
    let rows: Vec<&PaperRow> = paper.iter().filter(|row| row.sweep == sweep).collect();
    let values = |name: &str, pick: fn(&Summary) -> Option<f64>| -> Vec<f64> {
        runs.get(name)
            .map(|summaries| summaries.iter().filter_map(pick).collect())
            .unwrap_or_default()
    };
    let knn = |s: &Summary| s.knn.map(|a| a.top1);
    let linear = |s: &Summary| s.linear.map(|a| a.top1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| cell | paper (ImageNet-100) | kNN top-1 | linear top-1 | Δ linear vs first row | reading | Δ kNN | reading | training s | seeds |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    let Some(first) = rows.first() else {
        return out;
    };
    for row in &rows {
        let ours_linear = values(&row.cell, linear);
        let ours_knn = values(&row.cell, knn);
        let paper_difference = row.paper_top1 - first.paper_top1;
        let ((d_linear, r_linear), (d_knn, r_knn)) = if row.cell == first.cell {
            (
                ("–".into(), "baseline".into()),
                ("–".into(), "baseline".into()),
            )
        } else {
            (
                reading(&ours_linear, &values(&first.cell, linear), paper_difference),
                reading(&ours_knn, &values(&first.cell, knn), paper_difference),
            )
        };
        let seconds = values(&row.cell, |s| Some(s.train_seconds));
        let seeds = runs.get(&row.cell).map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "| `{}` | {} {:.1} | {} | {} | {d_linear} | {r_linear} | {d_knn} | {r_knn} | {} | {seeds} |",
            row.cell,
            row.paper_cell,
            row.paper_top1,
            cell(&ours_knn),
            cell(&ours_linear),
            mean_se(&seconds).map_or("–".into(), |(mean, _)| format!("{mean:.0}")),
        );
    }
    out
}

/// The distinct commits the runs were made at, for the page to name.
pub fn commits(runs: &BTreeMap<String, Vec<Summary>>) -> Vec<String> {
    let mut commits: Vec<String> = runs
        .values()
        .flatten()
        .map(|summary| summary.commit.clone())
        .collect();
    commits.sort();
    commits.dedup();
    commits
}
