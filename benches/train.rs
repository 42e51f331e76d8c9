//! Training throughput (images/s) of `models/quickstart.fa` through `fa`'s training loop
//! against the same model and augmentations in PyTorch, in the same run.
//!
//! `cargo bench --bench train [-- --device cpu|cuda --steps N --warmup N --batch N]`.
//! `fa` is timed through `fa_torch::train::train`, the code path of `fa train`: the model is
//! compiled from the file, the network built, each step draws a batch, augments both views on
//! the device, runs forward and backward and the project's SGD. Data loading and the final
//! checkpoint are excluded: the figure comes from the per-step wall times the loop writes to
//! `metrics.jsonl`, after `--warmup` steps. The PyTorch side is `benches/train_torch.py`, run
//! with `$FA_PYTHON`, else the project's `.venv/bin/python`, else `python3`, with the same
//! thread count (`FA_BENCH_THREADS` sets both) and device. Needs Fashion-MNIST under
//! `$FA_DATA_ROOT`, else `/usr/share/datasets`.

#[path = "common/flags.rs"]
mod flags;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use fa_lang::driver::compile_file;
use fa_lang::resolve::Override;
use fa_torch::lower::parse_device;
use fa_torch::train::metrics::{read_metrics, Record};
use fa_torch::train::{train, LogFormat, TrainOptions};
use tch::Device;

struct Settings {
    device: String,
    steps: u64,
    warmup: u64,
    batch: Option<usize>,
}

fn settings() -> Settings {
    let value = flags::value;
    Settings {
        device: value("--device").unwrap_or_else(|| "cpu".into()),
        steps: value("--steps").and_then(|v| v.parse().ok()).unwrap_or(20),
        warmup: value("--warmup").and_then(|v| v.parse().ok()).unwrap_or(3),
        batch: value("--batch").and_then(|v| v.parse().ok()),
    }
}

fn data_root() -> Option<PathBuf> {
    let root = std::env::var_os("FA_DATA_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets"));
    root.join("fashion-mnist/train-images-idx3-ubyte.gz")
        .exists()
        .then_some(root)
}

/// The CPU's model name and logical CPU count from /proc/cpuinfo (what `lscpu` shows).
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find_map(|line| {
        line.strip_prefix("model name")
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
    });
    let cpus = info
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    format!("{} × {cpus}", model.unwrap_or_else(|| "unknown".into()))
}

/// The 1-, 5- and 15-minute load averages: other processes compete with the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What one side measured.
struct Throughput {
    images_per_s: f64,
    ms_per_step: f64,
}

/// Trains the quickstart for warmup + steps steps with `fa`'s loop and returns the
/// throughput of the timed steps, and the batch size the file (or `--batch`) gives.
fn fa_throughput(
    settings: &Settings,
    device: Device,
    root: &Path,
) -> Result<(Throughput, usize, f64), String> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/quickstart.fa");
    let overrides: Vec<Override> = match settings.batch {
        Some(batch) => vec![format!("data.batch={batch}")
            .parse()
            .map_err(|e| format!("{e}"))?],
        None => Vec::new(),
    };
    let compiled = compile_file(&file, &overrides)
        .map_err(|report| fa_lang::diag::render(&report, 100, false))?;
    let (_, valid) = compiled.cells.into_iter().next().ok_or("no model")?;
    let batch = valid.model().data.batch_size * valid.model().optim.accumulate.max(1);
    // The PyTorch side builds the same encoder: pass it the file's convnet widths.
    if let Some(fa_lang::ir::ModuleKind::ConvNet { widths }) =
        valid.model().modules.get("f").map(|m| &m.kind)
    {
        let text: Vec<String> = widths.iter().map(usize::to_string).collect();
        std::env::set_var("FA_BENCH_WIDTHS", text.join(","));
    }
    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    let options = TrainOptions {
        out: out.path().to_path_buf(),
        device,
        data_root: root.to_path_buf(),
        resume: false,
        overwrite: false,
        log: LogFormat::Quiet,
        max_steps: Some(settings.warmup + settings.steps),
        skip_eval: true,
        source: "{}".into(),
        tensorboard: false,
    };
    let start = Instant::now();
    train(&valid, &options).map_err(|e| e.to_string())?;
    let wall = start.elapsed().as_secs_f64();
    let records = read_metrics(&out.path().join("metrics.jsonl")).map_err(|e| e.to_string())?;
    // Each step record holds the images of the step over the wall time since the previous
    // step ended, so the step's seconds are batch / images_per_s.
    let seconds: f64 = records
        .iter()
        .filter_map(|record| match record {
            Record::Step {
                step, images_per_s, ..
            } if *step > settings.warmup => Some(batch as f64 / images_per_s),
            _ => None,
        })
        .sum();
    let steps = settings.steps as f64;
    Ok((
        Throughput {
            images_per_s: steps * batch as f64 / seconds,
            ms_per_step: seconds * 1000.0 / steps,
        },
        batch,
        wall,
    ))
}

fn python() -> String {
    if let Ok(python) = std::env::var("FA_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    if Path::new(venv).exists() {
        return venv.into();
    }
    "python3".into()
}

/// Runs `benches/train_torch.py`; returns its throughput, the augmentation's share of a
/// step in milliseconds, and its torch version.
fn torch_throughput(
    settings: &Settings,
    device: Device,
    root: &Path,
    batch: usize,
) -> Result<(Throughput, f64, String), String> {
    let device_text = match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".into(),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/train_torch.py");
    let output = Command::new(python())
        .arg(script)
        .args([
            "--data-root",
            &root.display().to_string(),
            "--device",
            &device_text,
        ])
        .args(["--batch", &batch.to_string()])
        .args(["--steps", &settings.steps.to_string()])
        .args(["--warmup", &settings.warmup.to_string()])
        .args(["--threads", &tch::get_num_threads().to_string()])
        .args([
            "--widths",
            &std::env::var("FA_BENCH_WIDTHS").unwrap_or_else(|_| "16,32,64".into()),
        ])
        .output()
        .map_err(|e| format!("cannot run python: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}"))?;
    let get = |key: &str| json[key].as_f64().ok_or(format!("no `{key}` in {line}"));
    Ok((
        Throughput {
            images_per_s: get("images_per_s")?,
            ms_per_step: get("ms_per_step")?,
        },
        get("augment_ms_per_step")?,
        json["torch"].as_str().unwrap_or("?").to_string(),
    ))
}

fn main() {
    let host = fa_torch::host_memory::install();
    let settings = settings();
    println!("host memory: {host}");
    let device = match parse_device(&settings.device) {
        Ok(device) => device,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let Some(root) = data_root() else {
        println!("skipping: Fashion-MNIST not found under $FA_DATA_ROOT or /usr/share/datasets");
        return;
    };
    if let Some(threads) = std::env::var("FA_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tch::set_num_threads(threads);
    }
    println!(
        "cpu: {}, device {device:?}, torch threads: {}",
        cpu_model(),
        tch::get_num_threads()
    );
    println!("load average at start: {}", load_average());
    let (fa, batch, wall) = match fa_throughput(&settings, device, &root) {
        Ok(result) => result,
        Err(error) => {
            eprintln!("fa training failed: {error}");
            std::process::exit(1);
        }
    };
    println!(
        "models/quickstart.fa, batch {batch}, two views, {} timed steps after {} warm-up",
        settings.steps, settings.warmup
    );
    println!(
        "fa train:   {:8.0} images/s  {:8.1} ms/step  (whole run with data loading {wall:.1} s)",
        fa.images_per_s, fa.ms_per_step
    );
    match torch_throughput(&settings, device, &root, batch) {
        Ok((torch, augment_ms, version)) => {
            println!(
                "pytorch:    {:8.0} images/s  {:8.1} ms/step  (of which torchvision v2 per-image augmentation {augment_ms:.1} ms; torch {version})",
                torch.images_per_s, torch.ms_per_step
            );
            let model_ms = torch.ms_per_step - augment_ms;
            println!(
                "pytorch without augmentation: {:8.0} images/s  {model_ms:8.1} ms/step",
                batch as f64 * 1000.0 / model_ms
            );
            println!(
                "ratio fa/pytorch images/s: {:.2} (without pytorch's augmentation: {:.2})",
                fa.images_per_s / torch.images_per_s,
                fa.ms_per_step.recip() * model_ms
            );
        }
        Err(error) => println!("pytorch comparison skipped: {error}"),
    }
    println!("load average at end: {}", load_average());
}
