//! The commands of the `fa-torch` executable (train, eval, sweep, export, plot, augment,
//! doctor), one function each, taking an option struct and returning an [`Outcome`].

mod error;
mod sweep;

pub use error::CommandError;
pub use sweep::{sweep, SweepArgs};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::Device;

use crate::eval::EvalOptions;
use crate::train::{LogFormat, Summary, TrainOptions};
use fa_lang::driver::Compiled;
use fa_lang::driver::{compile_reporting, Outcome};
use fa_lang::ir::Model;
use fa_lang::resolve::{Cell, Override};
use fa_lang::valid::ValidModel;

/// The flags of `fa train`.
#[derive(Clone, Debug)]
pub struct TrainArgs {
    pub file: PathBuf,
    pub overrides: Vec<Override>,
    pub out: Option<PathBuf>,
    pub device: String,
    pub resume: bool,
    /// Replace a run already in the folder.
    pub overwrite: bool,
    pub data_root: Option<PathBuf>,
    pub log: LogFormat,
    pub max_steps: Option<u64>,
    pub no_eval: bool,
    pub cell: Option<String>,
    /// Do not write TensorBoard's events file.
    pub no_tensorboard: bool,
    /// Start this many local ranks of a data-parallel job (`--nproc`).
    pub nproc: Option<usize>,
    /// Batch norm with the global batch's statistics in a data-parallel job.
    pub sync_batch_norm: bool,
    /// How long a rank waits for the others at the rendezvous or in a collective.
    pub dist_timeout: std::time::Duration,
    /// `auto` (NCCL for CUDA, Gloo for the CPU), `gloo` or `nccl` (`--dist-backend`).
    pub dist_backend: String,
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

/// Compiles `file`, printing its diagnostics; `None` when it has errors.
fn compile(file: &Path, overrides: &[Override]) -> Result<Option<Compiled>, CommandError> {
    compile_reporting(file, overrides).map_err(|source| CommandError::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// `fa doctor`: the libtorch in use, the devices it sees and the distributed backends.
pub fn doctor() -> Result<Outcome, CommandError> {
    println!("{}", crate::lower::doctor().trim_end());
    println!("{}", crate::dist::doctor());
    let host = crate::host_memory::policy().map_or(
        "not set (the library's caller did not call host_memory::install)".to_string(),
        |p| p.to_string(),
    );
    println!("host memory: {host}");
    Ok(Outcome::Success)
}

fn device(name: &str) -> Result<Device, CommandError> {
    crate::lower::parse_device(name).map_err(CommandError::Device)
}

fn data_root(flag: Option<&Path>) -> PathBuf {
    crate::data::data_root(flag)
}

/// Picks the cell to train: the only one, or the one named by `--cell`.
fn pick_cell(
    cells: Vec<(Cell, ValidModel)>,
    wanted: Option<&str>,
) -> Result<(Cell, ValidModel), CommandError> {
    let names: Vec<String> = cells.iter().map(|(cell, _)| cell.name.clone()).collect();
    match wanted {
        Some(wanted) => cells
            .into_iter()
            .find(|(cell, _)| cell.name == wanted)
            .ok_or_else(|| CommandError::NoSuchCell {
                wanted: wanted.to_string(),
                cells: names,
            }),
        None if cells.len() == 1 => Ok(cells.into_iter().next().expect("one cell")),
        None => Err(CommandError::SweepNeedsCell { cells: names }),
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
        if let Some(precision) = &summary.eval_precision {
            println!("features extracted in {precision}, scored in f32");
        }
    }
}

/// The resolved model as a run folder stores it (`model.json`) and checkpoints record it;
/// a sweep compares it with the stored one to recognise its own runs.
fn model_source(model: &Model) -> String {
    crate::train::stored_model::to_json(model)
}

/// `fa train`: compile, train, evaluate, print the summary.
pub fn train(args: &TrainArgs) -> Result<Outcome, CommandError> {
    let launch = crate::dist::Launch::from_env()?;
    // Ranks other than 0 compile quietly: rank 0 prints the diagnostics once.
    let compiled = match &launch {
        Some(launch) if launch.rank != 0 => {
            fa_lang::driver::compile_file(&args.file, &args.overrides).ok()
        }
        _ => compile(&args.file, &args.overrides)?,
    };
    let Some(compiled) = compiled else {
        return Ok(Outcome::Failed);
    };
    let parallel = launch.is_some() || args.nproc.is_some_and(|n| n > 1);
    if parallel {
        // Checked before any rank starts: the backend exists for the device, and a local job
        // has a GPU per rank.
        let device = device(&args.device)?;
        rank_backend(&args.dist_backend, device, 0)?;
        if let (Device::Cuda(_), None, Some(nproc)) = (device, &launch, args.nproc) {
            let count = tch::Cuda::device_count().max(0) as usize;
            if nproc > count {
                return Err(CommandError::TooFewGpus { nproc, count });
            }
        }
    }
    if let (None, Some(nproc)) = (&launch, args.nproc.filter(|&n| n > 1)) {
        // The supervisor: the same command, once per rank, after the file has compiled.
        pick_cell(compiled.cells, args.cell.as_deref())?;
        crate::train::interrupt::install();
        let program = std::env::current_exe().map_err(|source| CommandError::Io {
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        let arguments: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let code = crate::dist::launch::run_local(nproc, &program, &arguments, || {
            crate::train::interrupt::requested().is_some()
        })?;
        return match code {
            0 => Ok(Outcome::Success),
            code => Err(CommandError::RanksExited {
                code: code.clamp(1, 255) as u8,
            }),
        };
    }
    let leads = launch.as_ref().is_none_or(|launch| launch.rank == 0);
    let (cell, valid) = pick_cell(compiled.cells, args.cell.as_deref())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(folder_name(&cell.name)));
    let mut device = device(&args.device)?;
    if let (Some(launch), Device::Cuda(_)) = (&launch, device) {
        // Each rank of a CUDA job trains on the GPU of its local rank.
        device = Device::Cuda(launch.local_rank);
    }
    if leads && args.log != LogFormat::Quiet && args.log != LogFormat::Json {
        eprintln!(
            "training {} on {:?} into {}",
            cell.name,
            device,
            out.display()
        );
        eprintln!("{}", crate::train::describe(&valid));
    }
    let options = TrainOptions {
        out: out.clone(),
        device,
        data_root: data_root(args.data_root.as_deref()),
        resume: args.resume,
        overwrite: args.overwrite,
        log: args.log,
        max_steps: args.max_steps,
        skip_eval: args.no_eval,
        source: model_source(&cell.model),
        tensorboard: !args.no_tensorboard,
    };
    crate::train::interrupt::install();
    let summary = match &launch {
        None => {
            if args.sync_batch_norm && args.log != LogFormat::Quiet {
                eprintln!("note: --sync-batch-norm has no effect on one process");
            }
            crate::train::train(&valid, &options)
        }
        Some(launch) => {
            if launch.launcher == crate::dist::launch::Launcher::Local && device == Device::Cpu {
                // The local ranks share this machine's cores.
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                tch::set_num_threads((cores / launch.world).max(1) as i32);
            }
            let backend = rank_backend(&args.dist_backend, device, launch.local_rank)?;
            let group =
                crate::dist::ProcessGroup::new(&launch.group_options(backend, args.dist_timeout))?;
            let parallel = crate::train::Parallel {
                backend: match backend {
                    crate::dist::Backend::Gloo => "Gloo",
                    crate::dist::Backend::Nccl { .. } => "NCCL",
                    crate::dist::Backend::GlooCuda { .. } => "Gloo on CUDA",
                },
                collectives: crate::dist::Collectives::new(group),
                sync_batch_norm: args.sync_batch_norm || valid.model().train.sync_batch_norm,
                trace: std::env::var_os(crate::dist::launch::TRACE_VAR).map(PathBuf::from),
            };
            match crate::train::train_parallel(&valid, &options, &parallel) {
                // Every rank stops at the same step; rank 0 alone says so, with the
                // command that resumes the run.
                Err(crate::train::TrainError::Interrupted { .. }) if !leads => {
                    return Ok(Outcome::Failed)
                }
                other => other,
            }
        }
    }
    .map_err(|error| error::with_resume_command(error, || error::resume_command_line(true)))?;
    if !leads {
        return Ok(Outcome::Success);
    }
    if args.log == LogFormat::Json {
        let mut value = serde_json::to_value(&summary).expect("summaries serialise");
        value["kind"] = "summary".into();
        value["run"] = out.display().to_string().into();
        println!("{value}");
    } else {
        print_summary(&summary, &out);
    }
    Ok(Outcome::Success)
}

/// The c10d backend of a rank on `device` with local rank `local_rank`, from `--dist-backend`
/// (`auto`: NCCL for CUDA, Gloo for the CPU).
fn rank_backend(
    chosen: &str,
    device: Device,
    local_rank: usize,
) -> Result<crate::dist::Backend, CommandError> {
    use crate::dist::Backend;
    let cuda = match device {
        Device::Cpu => false,
        Device::Cuda(_) => true,
        other => {
            return Err(CommandError::ParallelDevice {
                device: format!("{other:?}"),
            })
        }
    };
    let nccl = || {
        crate::dist::nccl_available()
            .map(|()| Backend::Nccl { device: local_rank })
            .map_err(|why| CommandError::NcclMissing { why })
    };
    match (chosen, cuda) {
        ("auto", true) | ("nccl", true) => nccl(),
        ("auto", false) | ("gloo", false) => Ok(Backend::Gloo),
        ("gloo", true) => Ok(Backend::GlooCuda { device: local_rank }),
        ("nccl", false) => Err(CommandError::NcclNeedsCuda),
        (other, _) => Err(CommandError::UnknownBackend {
            backend: other.to_string(),
        }),
    }
}

/// The run folder of `path`: `path` itself when it is a run folder, the run a checkpoint
/// file belongs to (`<run>/checkpoints/<file>`), or an error saying which of them it is not.
fn run_folder_of(path: &Path) -> Result<PathBuf, CommandError> {
    let has_model = |folder: &Path| folder.join("model.json").is_file();
    if path.is_dir() {
        return if has_model(path) {
            Ok(path.to_path_buf())
        } else {
            Err(CommandError::NotARunFolder {
                path: path.to_path_buf(),
            })
        };
    }
    if !path.exists() {
        return Err(CommandError::NoSuchRun {
            path: path.to_path_buf(),
        });
    }
    let parent = path.parent().unwrap_or(Path::new(""));
    let run = match parent.parent() {
        Some(run) if run.as_os_str().is_empty() => Path::new("."),
        Some(run) => run,
        None => Path::new(".."),
    };
    let in_checkpoints = parent
        .canonicalize()
        .ok()
        .and_then(|parent| parent.file_name().map(|name| name == "checkpoints"))
        .unwrap_or(false);
    if in_checkpoints && has_model(run) {
        Ok(run.to_path_buf())
    } else {
        Err(CommandError::LooseCheckpoint {
            path: path.to_path_buf(),
        })
    }
}

/// Reads the resolved model a run folder stores and validates it again.
fn load_run_model(run: &Path) -> Result<ValidModel, CommandError> {
    let path = run.join("model.json");
    let text = std::fs::read_to_string(&path).map_err(|source| CommandError::Io {
        path: path.clone(),
        source,
    })?;
    let model: Model =
        crate::train::stored_model::from_json(&text).map_err(|source| CommandError::NotAModel {
            path: path.clone(),
            source,
        })?;
    fa_lang::valid::validate(model).map_err(|problems| CommandError::StoredModelInvalid {
        path,
        problems: fa_lang::diag::plain_errors(&problems),
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
    let valid = load_run_model(&run_folder_of(run)?)?;
    let device = device(device_name)?;
    let both = !knn && !linear;
    let options = EvalOptions {
        device,
        data_root: data_root(root),
        knn: knn || both,
        linear: linear || both,
    };
    let summary = crate::eval::evaluate_run(&valid, run, &options)?;
    print_summary(&summary, run);
    Ok(Outcome::Success)
}

/// `fa export --backbone`: the encoder's weights under torchvision's names.
pub fn export(
    run: &Path,
    backbone_out: &Path,
    format: crate::export::ExportFormat,
    encoder: crate::export::ExportEncoder,
) -> Result<Outcome, CommandError> {
    let valid = load_run_model(&run_folder_of(run)?)?;
    let names = crate::export::export_backbone_as(&valid, run, backbone_out, format, encoder)?;
    let which = match encoder {
        crate::export::ExportEncoder::Online => "online encoder",
        crate::export::ExportEncoder::Target => "EMA target encoder",
    };
    eprintln!(
        "wrote {names} tensors ({} layout, {which}) to {}",
        format.name(),
        backbone_out.display()
    );
    Ok(Outcome::Success)
}

/// `fa augment`: a preview grid of each view's pipeline on the first training images.
///
/// `--view` takes the name the source gives the branch (`anchor`), the view's internal node
/// name (`anchor.1`) or the pipeline's name. A sweep previews one cell: the first, unless
/// `--set` picks another, and says which.
pub fn augment(
    file: &Path,
    view: Option<&str>,
    out: &Path,
    root: Option<&Path>,
    overrides: &[Override],
) -> Result<Outcome, CommandError> {
    let Some(compiled) = compile(file, overrides)? else {
        return Ok(Outcome::Failed);
    };
    let cells = compiled.cells.len();
    let (_, valid) = compiled
        .cells
        .into_iter()
        .next()
        .ok_or(CommandError::NoModel)?;
    let model = valid.model();
    if cells > 1 {
        eprintln!(
            "note: {} has {cells} sweep cells; previewing `{}` (pick another with --set NAME=LABEL)",
            file.display(),
            model.name
        );
    }
    let mut pipelines: BTreeMap<String, &fa_lang::ir::Pipeline> = BTreeMap::new();
    let mut known: Vec<String> = Vec::new();
    for &node in valid.views() {
        let fa_lang::ir::NodeKind::View { pipeline } = &model.graph[node].kind else {
            continue;
        };
        let name = &model.graph[node].name;
        let branch = source_name(name);
        known.push(format!("`{branch}` (pipeline `{pipeline}`)"));
        if view.is_none_or(|wanted| wanted == name || wanted == branch || wanted == pipeline) {
            pipelines.insert(format!("{branch} ({pipeline})"), &model.pipelines[pipeline]);
        }
    }
    if pipelines.is_empty() {
        return Err(CommandError::NoSuchView {
            view: view.unwrap_or_default().to_string(),
            known: format!("the views of `{}` are {}", model.name, known.join(", ")),
        });
    }
    let set = crate::train::load_split(
        &model.data,
        &data_root(root),
        &model.data.train_split,
        Some(8),
    )?;
    let list: Vec<(String, &fa_lang::ir::Pipeline)> = pipelines.into_iter().collect();
    let (width, height) = crate::data::preview_grid(
        &set,
        &list,
        model.data.channels,
        8,
        4,
        model.train.seed,
        out,
    )?;
    println!("{} ({width}×{height})", out.display());
    Ok(Outcome::Success)
}

/// The name the source gives a view's branch: a chain `anchor = view(p) -> f` names its
/// steps `anchor.1`, `anchor.2`, …; a lone `x = view(p)` is `x`.
fn source_name(node: &str) -> &str {
    match node.rsplit_once('.') {
        Some((branch, step)) if !step.is_empty() && step.bytes().all(|b| b.is_ascii_digit()) => {
            branch
        }
        _ => node,
    }
}

/// `fa plot`: curves of one or more runs.
pub fn plot(runs: &[PathBuf], out: &Path) -> Result<Outcome, CommandError> {
    if runs.is_empty() {
        return Err(CommandError::NoRuns);
    }
    if out.exists() && !out.is_dir() {
        return Err(CommandError::PlotOutNotAFolder {
            path: out.to_path_buf(),
        });
    }
    let mut loaded = Vec::new();
    for run in runs {
        let path = run.join("metrics.jsonl");
        if !path.is_file() {
            return Err(if run.exists() {
                CommandError::NoMetrics { path: run.clone() }
            } else {
                CommandError::NoSuchRun { path: run.clone() }
            });
        }
        let records = crate::train::metrics::read_metrics(&path)?;
        let label = run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| run.display().to_string());
        loaded.push((label, records));
    }
    let written = crate::plot::plot_runs(&loaded, out)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod backend_tests {
    use super::*;
    use crate::dist::Backend;

    #[test]
    fn the_backend_follows_the_device_unless_chosen() {
        assert_eq!(rank_backend("auto", Device::Cpu, 1).unwrap(), Backend::Gloo);
        assert_eq!(rank_backend("gloo", Device::Cpu, 1).unwrap(), Backend::Gloo);
        assert_eq!(
            rank_backend("gloo", Device::Cuda(0), 3).unwrap(),
            Backend::GlooCuda { device: 3 }
        );
        assert!(matches!(
            rank_backend("nccl", Device::Cpu, 0),
            Err(CommandError::NcclNeedsCuda)
        ));
        assert!(matches!(
            rank_backend("mpi", Device::Cpu, 0),
            Err(CommandError::UnknownBackend { .. })
        ));
        assert!(matches!(
            rank_backend("auto", Device::Mps, 0),
            Err(CommandError::ParallelDevice { .. })
        ));
        // A CUDA rank takes NCCL on the GPU of its local rank, where NCCL is built in.
        match crate::dist::nccl_available() {
            Ok(()) => assert_eq!(
                rank_backend("auto", Device::Cuda(0), 2).unwrap(),
                Backend::Nccl { device: 2 }
            ),
            Err(_) => assert!(matches!(
                rank_backend("auto", Device::Cuda(0), 2),
                Err(CommandError::NcclMissing { .. })
            )),
        }
    }
}
