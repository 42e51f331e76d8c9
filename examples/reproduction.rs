//! Prints the tables of `docs/reproduction.md` rebuilt from the committed run summaries under
//! `docs/reproduction/`, each between the markers the page and `tests/reproduction.rs` use.
//!
//! `cargo run --example reproduction`

use std::path::Path;

use fa_torch::report::{commits, read_paper, read_summaries, table};

fn main() -> miette::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reproduction");
    let paper = read_paper(&root.join("paper.tsv"))?;
    let runs = read_summaries(&root)?;
    let mut sweeps: Vec<&str> = paper.iter().map(|row| row.sweep.as_str()).collect();
    sweeps.dedup();
    for sweep in sweeps {
        println!("<!-- table: {sweep} -->");
        print!("{}", table(sweep, &paper, &runs));
        println!("<!-- end table -->\n");
    }
    let commits = commits(&runs);
    if commits.is_empty() {
        println!("commits: none yet");
    } else {
        println!("commits: {}", commits.join(", "));
    }
    Ok(())
}
