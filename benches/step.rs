//! Step time of a small model in `fa` against the same model written in PyTorch, as a ratio.
//!
//! `cargo bench --bench step [-- --device cpu|cuda --model small|resnet18 --batch N --steps N]`.
//! The PyTorch side is `benches/step_torch.py`, run with `$FA_PYTHON`, else the project's
//! `.venv/bin/python`, else `python3`; both use the same thread count and device.

#[path = "common/flags.rs"]
mod flags;

use std::process::Command;
use std::time::Instant;

use fa_lang::ir::ModuleKind;
use fa_lang::testing::{architecture, nn, Architecture, Widths};
use fa_torch::lower::{parse_device, Network};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

struct Settings {
    device: String,
    model: String,
    batch: usize,
    steps: usize,
}

fn settings() -> Settings {
    let value = flags::value;
    let model = value("--model").unwrap_or_else(|| "small".into());
    let default_batch = if model == "resnet18" { 512 } else { 256 };
    Settings {
        device: value("--device").unwrap_or_else(|| "cpu".into()),
        batch: value("--batch")
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_batch),
        steps: value("--steps").and_then(|v| v.parse().ok()).unwrap_or(10),
        model,
    }
}

/// The benchmarked model: Parallel-predictor-FA with NN augmentation (bank 4,096).
fn widths(model: &str) -> Widths {
    match model {
        "resnet18" => Widths::resnet18_cifar(),
        // The quickstart shape: a small convnet on 28×28 greyscale images.
        _ => Widths {
            channels: 1,
            image_size: 28,
            encoder: ModuleKind::ConvNet {
                widths: vec![32, 64],
            },
            projector: vec![256, 128],
            predictor: vec![256, 128],
        },
    }
}

fn synchronise(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn rust_ms_per_step(settings: &Settings, device: Device) -> f64 {
    tch::manual_seed(0);
    let widths = widths(&settings.model);
    let valid = architecture(
        Architecture::ParallelPredictor,
        &widths,
        Some((nn(4096), 1)),
    );
    let store = tch::nn::VarStore::new(device);
    let mut network = Network::new(&store.root(), &valid).expect("the benchmark model lowers");
    let mut optimiser = tch::nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(&store, 0.05)
    .expect("sgd builds");
    let batch = settings.batch as i64;
    let shape = [
        batch,
        widths.channels as i64,
        widths.image_size as i64,
        widths.image_size as i64,
    ];
    let views: Vec<Tensor> = (0..2)
        .map(|_| Tensor::randn(shape, (Kind::Float, device)))
        .collect();
    let indices = Tensor::arange(batch, (Kind::Int64, device));
    let mut step = || {
        let output = network.forward(&views, &indices, true);
        optimiser.backward_step(&output.total);
    };
    for _ in 0..3 {
        step();
    }
    synchronise(device);
    let start = Instant::now();
    for _ in 0..settings.steps {
        step();
    }
    synchronise(device);
    start.elapsed().as_secs_f64() * 1000.0 / settings.steps as f64
}

fn python() -> String {
    if let Ok(python) = std::env::var("FA_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    if std::path::Path::new(venv).exists() {
        return venv.into();
    }
    "python3".into()
}

fn torch_ms_per_step(settings: &Settings, device: Device) -> Result<f64, String> {
    let device_text = match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".into(),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/step_torch.py");
    let output = Command::new(python())
        .arg(script)
        .args(["--model", &settings.model, "--device", &device_text])
        .args([
            "--batch",
            &settings.batch.to_string(),
            "--steps",
            &settings.steps.to_string(),
        ])
        .args(["--threads", &tch::get_num_threads().to_string()])
        .output()
        .map_err(|e| format!("cannot run python: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("ms_per_step "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "no timing from step_torch.py: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
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
    println!(
        "model {} (parallel-predictor, nn bank 4096), batch {}, {} timed steps, device {:?}, {} threads",
        settings.model,
        settings.batch,
        settings.steps,
        device,
        tch::get_num_threads()
    );
    let rust = rust_ms_per_step(&settings, device);
    println!("fa (tch):  {rust:8.1} ms/step");
    match torch_ms_per_step(&settings, device) {
        Ok(torch) => {
            println!("pytorch:   {torch:8.1} ms/step");
            println!("ratio fa/pytorch: {:.3}", rust / torch);
        }
        Err(error) => println!("pytorch comparison skipped: {error}"),
    }
}
