//! The commands of the `fa-torch` executable (train, eval, sweep, export, plot, augment,
//! doctor), one function each, taking an option struct and returning an [`Outcome`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::Device;

use crate::train::run::{self as runner, LogFormat, Summary, TrainOptions};
use fa_lang::driver::{compile_reporting, Compiled, Outcome};
use fa_lang::resolve::{Cell, Override};
use fa_lang::valid::ValidModel;

/// Progress output of `fa train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    Auto,
    Plain,
    Json,
    Quiet,
}

/// The flags of `fa train`.
#[derive(Clone, Debug)]
pub struct TrainArgs {
    pub file: PathBuf,
    pub overrides: Vec<Override>,
    pub out: Option<PathBuf>,
    pub device: String,
    pub resume: bool,
    pub data_root: Option<PathBuf>,
    pub log: Log,
    pub max_steps: Option<u64>,
    pub no_eval: bool,
    pub cell: Option<String>,
}

/// The flags of `fa eval`: with neither `knn` nor `linear`, both run.
#[derive(Clone, Debug)]
pub struct EvalArgs {
    pub run: PathBuf,
    pub knn: bool,
    pub linear: bool,
    pub device: String,
    pub data_root: Option<PathBuf>,
}

/// The flags of `fa sweep`.
#[derive(Clone, Debug)]
pub struct SweepArgs {
    pub file: PathBuf,
    pub overrides: Vec<Override>,
    pub seeds: u64,
    pub out: Option<PathBuf>,
    pub device: String,
    pub data_root: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CommandError {
    #[error("cannot read {}: {source}", .path.display())]
    #[diagnostic(code(fa::io))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    #[diagnostic(code(fa::usage))]
    Usage(String),
    #[error("{0}")]
    #[diagnostic(code(fa::train))]
    Failed(String),
}

impl CommandError {
    /// Usage and I/O problems exit with 2; a run that failed exits with 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Failed(_) => 1,
            _ => 2,
        }
    }
}

/// Compiles `file`, printing its diagnostics; `None` when it has errors.
fn compile(file: &Path, overrides: &[Override]) -> Result<Option<Compiled>, CommandError> {
    compile_reporting(file, overrides).map_err(|source| CommandError::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// `fa doctor`: the libtorch in use and the devices it sees.
pub fn doctor() -> Result<Outcome, CommandError> {
    println!("{}", crate::lower::doctor().trim_end());
    Ok(Outcome::Success)
}

fn device(name: &str) -> Result<Device, CommandError> {
    crate::lower::parse_device(name).map_err(|e| CommandError::Usage(e.to_string()))
}

fn data_root(flag: Option<&Path>) -> PathBuf {
    crate::data::data_root(flag)
}

fn failed(error: impl std::fmt::Display) -> CommandError {
    CommandError::Failed(error.to_string())
}

/// Problems with the data, the run folder or the files given exit with 2, like other usage
/// and I/O errors; a run that failed while training exits with 1.
fn train_error(error: runner::TrainError) -> CommandError {
    use runner::TrainError as E;
    match error {
        E::Data(_)
        | E::Io { .. }
        | E::NothingToResume { .. }
        | E::NoCheckpoint { .. }
        | E::RunExists { .. }
        | E::NoLabels { .. }
        | E::ClassMismatch { .. } => CommandError::Usage(error.to_string()),
        other => CommandError::Failed(other.to_string()),
    }
}

/// Picks the cell to train: the only one, or the one named by `--cell`.
fn pick_cell(
    cells: Vec<(Cell, ValidModel)>,
    wanted: Option<&str>,
) -> Result<(Cell, ValidModel), CommandError> {
    let names: Vec<String> = cells.iter().map(|(cell, _)| cell.name.clone()).collect();
    match wanted {
        Some(wanted) => cells.into_iter().find(|(cell, _)| cell.name == wanted).ok_or_else(|| {
            CommandError::Usage(format!("no cell named `{wanted}`; the cells are: {}", names.join(", ")))
        }),
        None if cells.len() == 1 => Ok(cells.into_iter().next().expect("one cell")),
        None => Err(CommandError::Usage(format!(
            "this file is a sweep of {} cells; train one with --cell NAME or all with `fa sweep` (cells: {})",
            names.len(),
            names.join(", ")
        ))),
    }
}

fn log_format(log: Log) -> LogFormat {
    match log {
        Log::Auto => LogFormat::Auto,
        Log::Plain => LogFormat::Plain,
        Log::Json => LogFormat::Json,
        Log::Quiet => LogFormat::Quiet,
    }
}

/// The folder name of a cell: its name with characters unsafe in paths replaced.
fn folder_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn print_summary(summary: &Summary, run: &Path) {
    let percent =
        |a: Option<crate::eval::Accuracy>| a.map_or("-".to_string(), |a| format!("{:.2}%", a.top1));
    println!("run        {}", run.display());
    println!("model      {}", summary.model);
    println!(
        "steps      {} ({} epochs, {:.1} s)",
        summary.steps, summary.epochs, summary.seconds
    );
    if let Some(loss) = summary.final_loss {
        println!("loss       {loss:.4}");
    }
    if let Some(std) = summary.collapse_std {
        println!(
            "proj std   {std:.4} (healthy ≈ {:.4}, collapsed → 0)",
            summary.healthy_std
        );
    }
    if summary.knn.is_some() || summary.linear.is_some() {
        println!("kNN top-1          {}", percent(summary.knn));
        println!("linear top-1       {}", percent(summary.linear));
        println!("random-init kNN    {}", percent(summary.random_init_knn));
        println!("raw-pixel kNN      {}", percent(summary.pixels_knn));
    }
}

fn train_cell(
    cell: &Cell,
    valid: &ValidModel,
    out: PathBuf,
    device: Device,
    root: PathBuf,
    args_log: LogFormat,
    resume: bool,
    max_steps: Option<u64>,
    skip_eval: bool,
) -> Result<Summary, CommandError> {
    let source = serde_json::to_string_pretty(&cell.model).expect("models serialise");
    let options = TrainOptions {
        out: out.clone(),
        device,
        data_root: root,
        resume,
        log: args_log,
        max_steps,
        skip_eval,
        source,
    };
    runner::train(valid, &options).map_err(train_error)
}

/// `fa train`: compile, train, evaluate, print the summary.
pub fn train(args: &TrainArgs) -> Result<Outcome, CommandError> {
    let Some(compiled) = compile(&args.file, &args.overrides)? else {
        return Ok(Outcome::Failed);
    };
    let (cell, valid) = pick_cell(compiled.cells, args.cell.as_deref())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(folder_name(&cell.name)));
    let device = device(&args.device)?;
    if args.log != Log::Quiet && args.log != Log::Json {
        eprintln!(
            "training {} on {:?} into {}",
            cell.name,
            device,
            out.display()
        );
        eprintln!("{}", runner::describe(&valid));
    }
    let summary = train_cell(
        &cell,
        &valid,
        out.clone(),
        device,
        data_root(args.data_root.as_deref()),
        log_format(args.log),
        args.resume,
        args.max_steps,
        args.no_eval,
    )?;
    if args.log == Log::Json {
        let mut value = serde_json::to_value(&summary).expect("summaries serialise");
        value["kind"] = "summary".into();
        value["run"] = out.display().to_string().into();
        println!("{value}");
    } else {
        print_summary(&summary, &out);
    }
    Ok(Outcome::Success)
}

/// Reads the resolved model a run folder stores and validates it again.
fn load_run_model(run: &Path) -> Result<ValidModel, CommandError> {
    let path = run.join("model.json");
    let text = std::fs::read_to_string(&path).map_err(|source| CommandError::Io {
        path: path.clone(),
        source,
    })?;
    let model: fa_lang::ir::Model = serde_json::from_str(&text)
        .map_err(|e| failed(format!("{} is not a model: {e}", path.display())))?;
    fa_lang::valid::validate(model).map_err(|problems| {
        failed(format!(
            "{} no longer validates ({} problems)",
            path.display(),
            problems.len()
        ))
    })
}

/// `fa eval`: kNN and/or linear probe of a run's latest checkpoint.
pub fn eval(args: &EvalArgs) -> Result<Outcome, CommandError> {
    let EvalArgs {
        run,
        knn,
        linear,
        device: device_name,
        data_root: root,
    } = args;
    let (run, knn, linear, root) = (run.as_path(), *knn, *linear, root.as_deref());
    // A checkpoint file lives in `<run>/checkpoints/`; the run folder holds the model.
    let folder = if run.is_file() {
        run.parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
    } else {
        run
    };
    let valid = load_run_model(folder)?;
    let device = device(device_name)?;
    let (knn, linear) = if !knn && !linear {
        (true, true)
    } else {
        (knn, linear)
    };
    let summary = runner::evaluate_run(&valid, run, device, &data_root(root), knn, linear)
        .map_err(train_error)?;
    print_summary(&summary, run);
    Ok(Outcome::Success)
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
    let mut results: Vec<(Cell, Vec<Summary>)> = Vec::new();
    for (cell, valid) in compiled.cells {
        let mut summaries = Vec::new();
        for seed in 0..seeds.max(1) {
            let run = out
                .join(folder_name(&cell.name))
                .join(format!("seed-{seed}"));
            let mut model = cell.model.clone();
            model.train.seed = model.train.seed.wrapping_add(seed);
            // A cell folder holding another configuration (an earlier sweep with other
            // `--set` values) is neither skipped nor resumed: its numbers would be reported
            // as this sweep's.
            let source = serde_json::to_string_pretty(&model).expect("models serialise");
            if let Ok(stored) = std::fs::read_to_string(run.join("model.json")) {
                if stored != source {
                    return Err(CommandError::Usage(format!(
                        "{} holds a run of another configuration of `{}`; sweep into another --out, or remove it",
                        run.display(),
                        cell.name
                    )));
                }
            }
            let done = run.join("summary.json");
            if let Ok(text) = std::fs::read_to_string(&done) {
                if let Ok(summary) = serde_json::from_str::<SummaryRecord>(&text) {
                    eprintln!("{}: seed {seed} done, skipped", cell.name);
                    summaries.push(summary.into());
                    continue;
                }
            }
            let valid = if seed == 0 {
                valid.clone()
            } else {
                fa_lang::valid::validate(model.clone())
                    .map_err(|_| failed("a reseeded cell failed to validate"))?
            };
            let seeded = Cell {
                model,
                ..cell.clone()
            };
            let resume = crate::train::checkpoint::latest(&run).is_some();
            eprintln!("{}: seed {seed}", cell.name);
            summaries.push(train_cell(
                &seeded,
                &valid,
                run,
                device,
                data_root(root),
                LogFormat::Plain,
                resume,
                None,
                false,
            )?);
        }
        results.push((cell, summaries));
    }
    let table = crate::train::table::render(&results, &compiled_header(&results, seeds, device));
    std::fs::create_dir_all(&out).map_err(|source| CommandError::Io {
        path: out.clone(),
        source,
    })?;
    fa_base::fsio::write_file_atomically(&out.join("table.md"), table.markdown.as_bytes())
        .map_err(|source| CommandError::Io {
            path: out.join("table.md"),
            source,
        })?;
    fa_base::fsio::write_file_atomically(&out.join("table.csv"), table.csv.as_bytes()).map_err(
        |source| CommandError::Io {
            path: out.join("table.csv"),
            source,
        },
    )?;
    print!("{}", table.markdown);
    Ok(Outcome::Success)
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

/// `fa export --backbone`: the encoder's weights under torchvision's names.
pub fn export(run: &Path, backbone_out: &Path) -> Result<Outcome, CommandError> {
    let valid = load_run_model(run)?;
    let names = runner::export_backbone(&valid, run, backbone_out).map_err(train_error)?;
    eprintln!("wrote {} tensors to {}", names, backbone_out.display());
    Ok(Outcome::Success)
}

/// `fa augment`: a preview grid of each view's pipeline on the first training images.
pub fn augment(
    file: &Path,
    view: Option<&str>,
    out: &Path,
    root: Option<&Path>,
) -> Result<Outcome, CommandError> {
    let Some(compiled) = compile(file, &[])? else {
        return Ok(Outcome::Failed);
    };
    let (_, valid) = compiled
        .cells
        .into_iter()
        .next()
        .ok_or_else(|| failed("no model"))?;
    let model = valid.model();
    let mut pipelines: BTreeMap<String, &fa_lang::ir::Pipeline> = BTreeMap::new();
    for &node in valid.views() {
        let fa_lang::ir::NodeKind::View { pipeline } = &model.graph[node].kind else {
            continue;
        };
        let name = &model.graph[node].name;
        if view.is_none_or(|wanted| wanted == name || wanted == pipeline) {
            pipelines.insert(format!("{name} ({pipeline})"), &model.pipelines[pipeline]);
        }
    }
    if pipelines.is_empty() {
        return Err(CommandError::Usage(format!(
            "no view named `{}`",
            view.unwrap_or_default()
        )));
    }
    let set = runner::load_split(
        &model.data,
        &data_root(root),
        &model.data.train_split,
        Some(8),
    )
    .map_err(failed)?;
    let list: Vec<(String, &fa_lang::ir::Pipeline)> = pipelines.into_iter().collect();
    let (width, height) = crate::data::preview_grid(
        &set,
        &list,
        model.data.channels,
        8,
        4,
        model.train.seed,
        out,
    )
    .map_err(failed)?;
    println!("{} ({width}×{height})", out.display());
    Ok(Outcome::Success)
}

/// `fa plot`: curves of one or more runs.
pub fn plot(runs: &[PathBuf], out: &Path) -> Result<Outcome, CommandError> {
    if runs.is_empty() {
        return Err(CommandError::Usage("no run folders given".into()));
    }
    let mut loaded = Vec::new();
    for run in runs {
        let path = run.join("metrics.jsonl");
        let records = crate::train::metrics::read_metrics(&path).map_err(|error| match error {
            crate::train::metrics::MetricsError::Io { path, source } => {
                CommandError::Io { path, source }
            }
            other => CommandError::Failed(other.to_string()),
        })?;
        let label = run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| run.display().to_string());
        loaded.push((label, records));
    }
    let written =
        crate::plot::plot_runs(&loaded, out).map_err(|e| CommandError::Failed(e.to_string()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(Outcome::Success)
}
