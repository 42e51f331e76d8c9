//! `fa sweep`: every cell of a sweep file × seed trained and evaluated, resumable, and the
//! results gathered into a table like the paper's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::Device;

use super::{compile, data_root, device, folder_name, model_source, CommandError};

mod pool;
use crate::train::{LogFormat, Summary, TrainOptions};
use fa_lang::driver::Outcome;
use fa_lang::resolve::{Cell, Override};

/// The flags of `fa sweep`.
#[derive(Clone, Debug)]
pub struct SweepArgs {
    pub file: PathBuf,
    pub overrides: Vec<Override>,
    pub seeds: u64,
    pub out: Option<PathBuf>,
    pub device: String,
    pub data_root: Option<PathBuf>,
    /// `--devices`: run this many cells at once, one per device (`cpu` may repeat).
    pub devices: Vec<String>,
}

/// `fa sweep`: every cell × seed, resumable; a markdown table and a CSV at the end.
pub fn sweep(args: &SweepArgs) -> Result<Outcome, CommandError> {
    let (file, overrides, seeds, out, device_name, root) = (
        args.file.as_path(),
        args.overrides.as_slice(),
        args.seeds,
        args.out.as_deref(),
        args.device.as_str(),
        args.data_root.as_deref(),
    );
    let Some(compiled) = compile(file, overrides)? else {
        return Ok(Outcome::Failed);
    };
    let device = device(device_name)?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("sweep-{stem}")));
    // Labels that differ only in characters a folder name cannot keep ("fm a", "fm_a")
    // would share a run folder and mix their runs: refuse before anything runs.
    let mut folders: BTreeMap<String, &str> = BTreeMap::new();
    for (cell, _) in &compiled.cells {
        let folder = folder_name(&cell.name);
        if let Some(first) = folders.insert(folder.clone(), &cell.name) {
            return Err(CommandError::SweepFolderCollision {
                first: first.to_string(),
                second: cell.name.clone(),
                folder,
            });
        }
    }
    // Each cell × seed is either done (its summary read back) or still to train.
    let parallel = !args.devices.is_empty();
    let workers = pool::parse_devices(&args.devices)?;
    let mut results: Vec<(Cell, Vec<Summary>)> = Vec::new();
    let mut jobs: Vec<pool::Job> = Vec::new();
    for (cell, valid) in compiled.cells {
        let mut summaries = Vec::new();
        for seed in 0..seeds.max(1) {
            let run = run_folder(&out, &cell, seed);
            let mut model = cell.model.clone();
            model.train.seed = model.train.seed.wrapping_add(seed);
            // A cell folder holding another configuration (an earlier sweep with other
            // `--set` values) is neither skipped nor resumed: its numbers would be reported
            // as this sweep's.
            let source = model_source(&model);
            if let Ok(stored) = std::fs::read_to_string(run.join("model.json")) {
                if !crate::train::stored_model::same_configuration(&stored, &source) {
                    return Err(CommandError::SweepConflict {
                        run,
                        cell: cell.name.clone(),
                    });
                }
            }
            if let Some(summary) = finished(&run) {
                eprintln!("{}: seed {seed} done, skipped", cell.name);
                summaries.push(summary);
                continue;
            }
            let valid = if seed == 0 {
                valid.clone()
            } else {
                fa_lang::valid::validate(model.clone())
                    .map_err(|_| CommandError::ReseededInvalid)?
            };
            let resume = crate::train::checkpoint::latest(&run).is_some();
            if parallel {
                // Trained below by a child process; its summary joins the table then.
                jobs.push(pool::Job {
                    cell: cell.name.clone(),
                    seed,
                    train_seed: model.train.seed,
                    run,
                    resume,
                });
                continue;
            }
            eprintln!("{}: seed {seed}", cell.name);
            let options = TrainOptions {
                out: run,
                device,
                data_root: data_root(root),
                resume,
                // The folder holds this sweep's own cell (its model.json matched above),
                // stopped before its first checkpoint: it starts again.
                overwrite: !resume,
                log: LogFormat::Plain,
                max_steps: None,
                skip_eval: false,
                source,
                tensorboard: true,
            };
            crate::train::interrupt::install();
            let summary = crate::train::train(&valid, &options).map_err(|error| {
                super::error::with_resume_command(error, || {
                    super::error::resume_command_line(false)
                })
            })?;
            summaries.push(summary);
        }
        results.push((cell, summaries));
    }
    if parallel {
        pool::run(
            &jobs,
            &workers,
            &pool::Command {
                file,
                overrides,
                data_root: root,
                logs: &out.join("logs"),
            },
        )?;
        // Every job has finished: read the summaries back, in the table's order.
        for (cell, summaries) in &mut results {
            summaries.clear();
            for seed in 0..seeds.max(1) {
                summaries.extend(finished(&run_folder(&out, cell, seed)));
            }
        }
    }
    let table = crate::train::table::render(&results, &compiled_header(&results, seeds, device));
    std::fs::create_dir_all(&out).map_err(|source| CommandError::Write {
        path: out.clone(),
        source,
    })?;
    for (name, text) in [("table.md", &table.markdown), ("table.csv", &table.csv)] {
        let path = out.join(name);
        fa_base::fsio::write_file_atomically(&path, text.as_bytes())
            .map_err(|source| CommandError::Write { path, source })?;
    }
    print!("{}", table.markdown);
    Ok(Outcome::Success)
}

/// The folder of one seed of a cell: `OUT/<cell>/seed-<k>`.
fn run_folder(out: &Path, cell: &Cell, seed: u64) -> PathBuf {
    out.join(folder_name(&cell.name))
        .join(format!("seed-{seed}"))
}

/// The summary of a finished run in `run`, if it has one.
fn finished(run: &Path) -> Option<Summary> {
    let text = std::fs::read_to_string(run.join("summary.json")).ok()?;
    serde_json::from_str::<SummaryRecord>(&text)
        .ok()
        .map(Summary::from)
}

/// What a finished run's summary.json holds, read back for a resumed sweep.
#[derive(serde::Deserialize)]
struct SummaryRecord {
    model: String,
    steps: u64,
    epochs: u64,
    seconds: f64,
    knn: Option<crate::eval::Accuracy>,
    linear: Option<crate::eval::Accuracy>,
}

impl From<SummaryRecord> for Summary {
    fn from(record: SummaryRecord) -> Summary {
        Summary {
            model: record.model,
            steps: record.steps,
            epochs: record.epochs,
            seconds: record.seconds,
            knn: record.knn,
            linear: record.linear,
            ..Summary::default()
        }
    }
}

fn compiled_header(results: &[(Cell, Vec<Summary>)], seeds: u64, device: Device) -> String {
    let Some((cell, _)) = results.first() else {
        return String::new();
    };
    let data = &cell.model.data;
    let card = match device {
        Device::Cuda(_) => "an NVIDIA GPU (see fa doctor)".to_string(),
        _ => "CPU".to_string(),
    };
    format!(
        "Dataset {} ({}), {} epochs, {} seed(s), on {card}. Our measurement, not the paper's figures.",
        data.path, data.train_split, cell.model.train.epochs, seeds
    )
}
