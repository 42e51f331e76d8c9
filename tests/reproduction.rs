//! `docs/reproduction.md` shows the tables rebuilt from the committed run summaries under
//! `docs/reproduction/`: the page cannot drift from the runs (regenerate the tables with
//! `cargo run --example reproduction`).

use std::path::Path;

use fa_torch::report::{commits, read_paper, read_summaries, table};

#[test]
fn the_reproduction_page_shows_the_tables_of_its_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let folder = root.join("docs/reproduction");
    let page = std::fs::read_to_string(root.join("docs/reproduction.md")).unwrap();
    let paper = read_paper(&folder.join("paper.tsv")).unwrap();
    let runs = read_summaries(&folder).unwrap();
    // Every run is one of the page's rows.
    for cell in runs.keys() {
        assert!(
            paper.iter().any(|row| &row.cell == cell),
            "{cell} has runs but no row in paper.tsv"
        );
    }
    let mut sweeps: Vec<&str> = paper.iter().map(|row| row.sweep.as_str()).collect();
    sweeps.dedup();
    for sweep in sweeps {
        let expected = format!(
            "<!-- table: {sweep} -->\n{}<!-- end table -->",
            table(sweep, &paper, &runs)
        );
        assert!(
            page.contains(&expected),
            "docs/reproduction.md does not show the current table of {sweep}; expected:\n{expected}"
        );
    }
    let commits = commits(&runs);
    for commit in &commits {
        assert!(
            page.contains(commit.as_str()),
            "the page does not name commit {commit}"
        );
    }
    // A page without runs says so.
    if commits.is_empty() {
        assert!(page.contains("Status: not reproduced yet"));
    }
}

/// The reading of a difference: real beyond twice its standard error, then with or against
/// the paper's sign; checked on summaries made up for the purpose.
#[test]
fn differences_are_read_against_twice_their_standard_error() {
    use fa_torch::eval::Accuracy;
    use fa_torch::report::PaperRow;
    use fa_torch::train::Summary;
    let run = |model: &str, linear: f64| Summary {
        model: model.into(),
        commit: "abc".into(),
        linear: Some(Accuracy {
            top1: linear,
            top5: 100.0,
        }),
        ..Summary::default()
    };
    let mut runs = std::collections::BTreeMap::new();
    runs.insert(
        "base".to_string(),
        vec![run("base", 50.0), run("base", 51.0), run("base", 52.0)],
    );
    // +5 with a standard error of about 0.8: real, the paper's sign.
    runs.insert(
        "up".to_string(),
        vec![run("up", 55.0), run("up", 56.0), run("up", 57.0)],
    );
    // +0.5: within noise.
    runs.insert(
        "same".to_string(),
        vec![run("same", 50.5), run("same", 51.5), run("same", 52.5)],
    );
    let row = |cell: &str, paper: f64| PaperRow {
        sweep: "s".into(),
        cell: cell.into(),
        paper_cell: "x".into(),
        paper_top1: paper,
    };
    let paper = [row("base", 78.0), row("up", 79.0), row("same", 79.0)];
    let text = table("s", &paper, &runs);
    let line = |cell: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("| `{cell}`")))
            .unwrap()
            .to_string()
    };
    assert!(line("up").contains("+5.00 ± 0.82 | holds"), "{text}");
    assert!(
        line("same").contains("+0.50 ± 0.82 | within noise"),
        "{text}"
    );
    let against = [row("base", 78.0), row("up", 77.0)];
    assert!(table("s", &against, &runs).contains("| opposite |"));
    // One seed has no spread: the difference is shown and not judged.
    runs.insert("once".to_string(), vec![run("once", 60.0)]);
    let single = [row("base", 78.0), row("once", 79.0)];
    let text = table("s", &single, &runs);
    assert!(text.contains("| +9.00 | too few seeds |"), "{text}");
}
