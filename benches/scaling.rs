//! How fa's cost grows: the training step against the batch size, against the NN bank's size
//! and the number of neighbours k (with the NN-FA share of the step), and the kNN evaluation
//! against the number of training features it searches. Prints markdown tables.
//!
//! `cargo bench --bench scaling [-- --device cpu|cuda --model small|resnet18 --steps N
//!  --batches 32,64,... --banks 4096,16384,... --ks 1,4 --knn-banks 5000,10000,...]`
//!
//! The step is the one `fa train` takes (the lowered network's forward pass, backward and
//! fa's SGD with momentum 0.9 and weight decay 5e-4) on random input of the model's shape, so
//! data loading and augmentation are left out; Parallel-predictor FA with NN augmentation.
//! The NN-FA share is `1 − t(no FA) / t(NN FA)` at the same batch. Each figure is the median
//! of `--steps` timed steps after two warm-up steps. The load average is printed with every
//! table: on a shared machine the figures are upper bounds.

#[path = "common/flags.rs"]
mod flags;

use std::time::Instant;

use fa_lang::ir::ModuleKind;
use fa_lang::ir::OptimKind;
use fa_lang::testing::{architecture, nn, Architecture, Widths};
use fa_torch::lower::{parse_device, Network};
use fa_torch::optim::Optimizer;
use tch::{Device, Kind, Tensor};

struct Settings {
    device: Device,
    model: String,
    steps: usize,
    batches: Vec<usize>,
    banks: Vec<usize>,
    ks: Vec<usize>,
    bank_batch: usize,
    knn_banks: Vec<usize>,
}

fn settings() -> Settings {
    let value = flags::value;
    let list = |flag: &str, default: &[usize]| -> Vec<usize> {
        value(flag).map_or_else(
            || default.to_vec(),
            |text| {
                text.split(',')
                    .map(|item| {
                        item.trim().parse().unwrap_or_else(|_| {
                            eprintln!("{flag}: `{item}` is not a whole number");
                            std::process::exit(2)
                        })
                    })
                    .collect()
            },
        )
    };
    let device =
        parse_device(&value("--device").unwrap_or_else(|| "cpu".into())).unwrap_or_else(|error| {
            eprintln!("{error}");
            std::process::exit(2)
        });
    Settings {
        device,
        model: value("--model").unwrap_or_else(|| "small".into()),
        steps: value("--steps").and_then(|v| v.parse().ok()).unwrap_or(5),
        batches: list("--batches", &[32, 64, 128, 256, 512]),
        banks: list("--banks", &[4096, 16384, 65536, 262144]),
        ks: list("--ks", &[1, 4]),
        bank_batch: value("--bank-batch")
            .and_then(|v| v.parse().ok())
            .unwrap_or(128),
        knn_banks: list("--knn-banks", &[5000, 10000, 25000, 50000]),
    }
}

fn widths(model: &str) -> Widths {
    match model {
        "resnet18" => Widths::resnet18_cifar(),
        // The quickstart's shape: a small convnet on 28×28 greyscale images.
        _ => Widths {
            channels: 1,
            image_size: 28,
            encoder: ModuleKind::ConvNet {
                widths: vec![16, 32, 64],
            },
            projector: vec![256, 128],
            predictor: vec![256, 128],
        },
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn synchronise(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median ms per training step of the model with NN FA from `bank` entries drawing `k`
/// neighbours (`None`: no FA term) at `batch`.
fn ms_per_step(settings: &Settings, batch: usize, fa: Option<(usize, usize)>) -> f64 {
    tch::manual_seed(0);
    let widths = widths(&settings.model);
    let valid = architecture(
        Architecture::ParallelPredictor,
        &widths,
        fa.map(|(bank, k)| (nn(bank), k)),
    );
    let device = settings.device;
    let store = tch::nn::VarStore::new(device);
    let mut network = Network::new(&store.root(), &valid).expect("the benchmark model lowers");
    let mut named: Vec<(String, Tensor)> = store
        .variables()
        .into_iter()
        .filter(|(_, tensor)| tensor.requires_grad())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optimizer = Optimizer::with_settings(OptimKind::Sgd, 0.9, 5e-4, named);
    let shape = [
        batch as i64,
        widths.channels as i64,
        widths.image_size as i64,
        widths.image_size as i64,
    ];
    let views: Vec<Tensor> = (0..2)
        .map(|_| Tensor::randn(shape, (Kind::Float, device)))
        .collect();
    let mut times = Vec::new();
    for step in 0..settings.steps + 2 {
        // Distinct dataset indices each step, as the loader gives them.
        let indices = Tensor::arange_start(
            (step * batch) as i64,
            ((step + 1) * batch) as i64,
            (Kind::Int64, device),
        );
        synchronise(device);
        let started = Instant::now();
        let output = network.forward(&views, &indices, true);
        optimizer.zero_grad();
        output.total.backward();
        optimizer.step(0.05);
        // The loss reaches the host every step, as in `fa train`.
        let _ = output.total.double_value(&[]);
        synchronise(device);
        if step >= 2 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    median(times)
}

/// Median ms of one weighted-kNN evaluation (k 200) of `queries` test features against
/// `bank` training features of width `width`.
fn knn_ms(device: Device, bank: usize, queries: usize, width: i64) -> f64 {
    tch::manual_seed(0);
    let train = Tensor::randn([bank as i64, width], (Kind::Float, device));
    let labels = Tensor::randint(10, [bank as i64], (Kind::Int64, device));
    let test = Tensor::randn([queries as i64, width], (Kind::Float, device));
    let test_labels = Tensor::randint(10, [queries as i64], (Kind::Int64, device));
    let mut times = Vec::new();
    for _ in 0..3 {
        synchronise(device);
        let started = Instant::now();
        let _ = fa_torch::eval::knn(&train, &labels, &test, &test_labels, 200, 0.1, 10);
        synchronise(device);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    median(times)
}

fn main() {
    let host = fa_torch::host_memory::install();
    let settings = settings();
    println!("host memory: {host}");
    println!(
        "model {} (Parallel-predictor, NN FA), device {:?}, {} intra-op threads, median of {} steps",
        settings.model,
        settings.device,
        tch::get_num_threads(),
        settings.steps
    );

    println!(
        "\n### Step time against the batch (NN bank 16,384, k 1; load {})\n",
        load_average()
    );
    println!("| batch | ms/step | images/s |");
    println!("|---|---|---|");
    for &batch in &settings.batches {
        let ms = ms_per_step(&settings, batch, Some((16384, 1)));
        println!("| {batch} | {ms:.1} | {:.0} |", batch as f64 * 1000.0 / ms);
    }

    let batch = settings.bank_batch;
    let without = ms_per_step(&settings, batch, None);
    println!(
        "\n### Step time against the NN bank and k (batch {batch}; load {})\n",
        load_average()
    );
    println!("Without FA: {without:.1} ms/step.\n");
    println!("| bank | k | ms/step | NN-FA share |");
    println!("|---|---|---|---|");
    for &bank in &settings.banks {
        for &k in &settings.ks {
            let ms = ms_per_step(&settings, batch, Some((bank, k)));
            println!(
                "| {bank} | {k} | {ms:.1} | {:.1}% |",
                100.0 * (1.0 - without / ms)
            );
        }
    }

    let queries = 10_000;
    let width = if settings.model == "resnet18" {
        512
    } else {
        64
    };
    println!(
        "\n### kNN evaluation against the training features searched ({queries} queries of width {width}, k 200; load {})\n",
        load_average()
    );
    println!("| training features | ms | µs per query |");
    println!("|---|---|---|");
    for &bank in &settings.knn_banks {
        let ms = knn_ms(settings.device, bank, queries, width);
        println!("| {bank} | {ms:.0} | {:.1} |", ms * 1000.0 / queries as f64);
    }
}
