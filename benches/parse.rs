//! Prints the time of parse + resolve + validate over every file in models/ (a library call per
//! file), and of formatting them; run with `cargo bench --bench parse --no-default-features`.

use std::path::{Path, PathBuf};
use std::time::Instant;

fn model_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.join("models")];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "fa") && !path.ends_with("common.fa") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("crate root exists");
    let files = model_files(root);
    let relative: Vec<PathBuf> = files
        .iter()
        .map(|f| f.strip_prefix(root).unwrap_or(f).to_path_buf())
        .collect();
    let rounds = 20;
    let mut cells = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        cells = 0;
        for file in &relative {
            match fa_lang::driver::compile_file(file, &[]) {
                Ok(compiled) => cells += compiled.cells.len(),
                Err(report) => eprintln!("{}: {} errors", file.display(), report.error_count()),
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "compile (parse + use + sweeps + validate): {} files, {cells} cells in {:.2} ms ({:.3} ms per cell)",
        relative.len(),
        elapsed * 1e3,
        elapsed * 1e3 / cells.max(1) as f64
    );
    let sources: Vec<String> = relative
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("readable"))
        .collect();
    let start = Instant::now();
    for _ in 0..rounds {
        for source in &sources {
            let _ = fa_lang::fmt::format_source(source);
        }
    }
    println!(
        "fmt: {} files in {:.2} ms",
        sources.len(),
        start.elapsed().as_secs_f64() * 1e3 / rounds as f64
    );
}
