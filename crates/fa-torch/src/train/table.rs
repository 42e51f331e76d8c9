//! Sweep results as a table shaped like the paper's: rows and columns from the sweep's axes,
//! mean ± std over seeds, and the difference to the first (baseline) column.

use std::collections::BTreeMap;

/// One finished cell: its axis labels and the top-1 accuracies of its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct CellResult {
    pub name: String,
    pub labels: Vec<(String, String)>,
    /// kNN top-1 per seed (percent).
    pub knn: Vec<f64>,
    /// Linear top-1 per seed (percent).
    pub linear: Vec<f64>,
}

/// The rendered table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub markdown: String,
    pub csv: String,
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt()))
}

fn cell_text(values: &[f64], baseline: Option<f64>) -> String {
    match mean_std(values) {
        None => "-".into(),
        Some((mean, std)) => {
            let mut text = if values.len() > 1 {
                format!("{mean:.2} ± {std:.2}")
            } else {
                format!("{mean:.2}")
            };
            if let Some(base) = baseline {
                text += &format!(" ({:+.2})", mean - base);
            }
            text
        }
    }
}

/// Lays `cells` out with the last axis as columns and the other axes as rows. The first
/// column is the baseline the differences refer to.
pub fn layout(cells: &[CellResult], header: &str) -> Table {
    let column_axis = cells
        .first()
        .and_then(|c| c.labels.last())
        .map(|(axis, _)| axis.clone());
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let mut grid: BTreeMap<(String, String), &CellResult> = BTreeMap::new();
    for cell in cells {
        let (row, column) = match cell.labels.split_last() {
            Some(((_, value), rest)) => {
                let row = rest
                    .iter()
                    .map(|(axis, value)| format!("{axis}={value}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    if row.is_empty() {
                        cell.name
                            .split('[')
                            .next()
                            .unwrap_or(&cell.name)
                            .to_string()
                    } else {
                        row
                    },
                    value.clone(),
                )
            }
            None => (cell.name.clone(), "result".to_string()),
        };
        if !rows.contains(&row) {
            rows.push(row.clone());
        }
        if !columns.contains(&column) {
            columns.push(column.clone());
        }
        grid.insert((row, column), cell);
    }

    let mut markdown = String::new();
    markdown += &format!("{header}\n\n");
    for (metric, pick) in [("kNN top-1 (%)", 0usize), ("linear top-1 (%)", 1)] {
        let values = |cell: &CellResult| {
            if pick == 0 {
                cell.knn.clone()
            } else {
                cell.linear.clone()
            }
        };
        if cells.iter().all(|cell| values(cell).is_empty()) {
            continue;
        }
        markdown += &format!(
            "**{metric}**, difference to `{}` in brackets\n\n",
            columns.first().cloned().unwrap_or_default()
        );
        markdown += &format!(
            "| {} | {} |\n",
            column_axis.as_deref().unwrap_or("cell"),
            columns.join(" | ")
        );
        markdown += &format!("|---|{}\n", "---|".repeat(columns.len()));
        for row in &rows {
            let baseline = columns
                .first()
                .and_then(|first| grid.get(&(row.clone(), first.clone())))
                .and_then(|cell| mean_std(&values(cell)))
                .map(|(mean, _)| mean);
            let texts: Vec<String> = columns
                .iter()
                .enumerate()
                .map(
                    |(i, column)| match grid.get(&(row.clone(), column.clone())) {
                        Some(cell) => {
                            cell_text(&values(cell), if i == 0 { None } else { baseline })
                        }
                        None => "-".into(),
                    },
                )
                .collect();
            markdown += &format!("| {row} | {} |\n", texts.join(" | "));
        }
        markdown += "\n";
    }

    let mut csv = String::from("cell,axes,seed,knn_top1,linear_top1\n");
    for cell in cells {
        let axes = cell
            .labels
            .iter()
            .map(|(a, v)| format!("{a}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let seeds = cell.knn.len().max(cell.linear.len());
        for seed in 0..seeds {
            let fmt = |v: Option<&f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
            // CSV quoting: a quote inside a field is doubled.
            let quote = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
            csv += &format!(
                "{},{},{seed},{},{}\n",
                quote(&cell.name),
                quote(&axes),
                fmt(cell.knn.get(seed)),
                fmt(cell.linear.get(seed))
            );
        }
    }
    Table { markdown, csv }
}

/// Builds the table from a sweep's cells and their run summaries.
pub fn render(
    results: &[(fa_lang::resolve::Cell, Vec<crate::train::Summary>)],
    header: &str,
) -> Table {
    let cells: Vec<CellResult> = results
        .iter()
        .map(|(cell, summaries)| CellResult {
            name: cell.name.clone(),
            labels: cell.labels.clone(),
            knn: summaries
                .iter()
                .filter_map(|s| s.knn.map(|a| a.top1))
                .collect(),
            linear: summaries
                .iter()
                .filter_map(|s| s.linear.map(|a| a.top1))
                .collect(),
        })
        .collect();
    layout(&cells, header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(arch: &str, fa: &str, knn: &[f64]) -> CellResult {
        CellResult {
            name: format!("m[arch={arch},fa={fa}]"),
            labels: vec![("arch".into(), arch.into()), ("fa".into(), fa.into())],
            knn: knn.to_vec(),
            linear: vec![],
        }
    }

    #[test]
    fn mean_and_sample_std_by_hand() {
        let (mean, std) = mean_std(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(mean, 2.0);
        assert!((std - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0]), Some((5.0, 0.0)));
        assert_eq!(mean_std(&[]), None);
    }

    #[test]
    fn rows_and_columns_come_from_the_axes_with_differences_to_the_first_column() {
        let cells = [
            cell("parallel", "none", &[70.0, 72.0]),
            cell("parallel", "nn", &[73.0, 73.0]),
            cell("post", "none", &[60.0]),
            cell("post", "nn", &[59.5]),
        ];
        let table = layout(&cells, "header");
        assert!(
            table.markdown.contains("| fa | none | nn |"),
            "{}",
            table.markdown
        );
        assert!(
            table
                .markdown
                .contains("| arch=parallel | 71.00 ± 1.41 | 73.00 ± 0.00 (+2.00) |"),
            "{}",
            table.markdown
        );
        assert!(
            table
                .markdown
                .contains("| arch=post | 60.00 | 59.50 (-0.50) |"),
            "{}",
            table.markdown
        );
        assert!(
            !table.markdown.contains("linear"),
            "no linear results, no linear table"
        );
        assert_eq!(table.csv.lines().count(), 1 + 2 + 2 + 1 + 1);
    }
}
