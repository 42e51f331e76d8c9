//! Data benchmarks: decoding CIFAR-10's training archive, and BYOL augmentation throughput
//! against torchvision on the same images in the same run.
//!
//! `cargo bench --bench augment`. Reads `$FA_BENCH_DATASETS/cifar10`, else
//! `../shared/datasets/cifar10` beside the project; calls the venv's python (`$FA_PYTHON`,
//! default the project's `.venv/bin/python`) on `benches/augment_torchvision.py`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fa_base::random::{Key, Purpose};
use fa_lang::ir::{DataConfig, DatasetFormat, Span};
use fa_torch::data::{byol_pipelines, load, to_tensor, Augmenter, LoadOptions};
use tch::{Device, Tensor};

/// How long each throughput measurement runs.
const MEASURE: Duration = Duration::from_secs(4);

fn datasets() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FA_BENCH_DATASETS").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("cifar10/test.tar.gz").exists())
}

fn config(image_size: usize) -> DataConfig {
    DataConfig {
        format: DatasetFormat::ImageFolder,
        path: "cifar10".to_string(),
        train_split: "train".to_string(),
        test_split: "test".to_string(),
        image_size,
        channels: 3,
        batch_size: 256,
        limit: None,
        span: Span::default(),
    }
}

/// Two views (one per BYOL pipeline) per image, in images per second, over whole passes of
/// `batch`-sized slices of `images` lasting at least [`MEASURE`].
fn fa_rate(images: &Tensor, size: usize, batch: i64, device: Device) -> f64 {
    let (strong, light) = byol_pipelines(size);
    let (strong, light) = (
        Augmenter::new(&strong, 3).unwrap(),
        Augmenter::new(&light, 3).unwrap(),
    );
    let images = images.to_device(device);
    let count = images.size()[0];
    let sync = || {
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
    };
    // Warm-up: allocator, kernels, thread pool.
    let samples: Vec<u64> = (0..batch as u64).collect();
    let _ = (
        strong.apply(
            &images.narrow(0, 0, batch),
            Key::new(0, Purpose::View(0), 0),
            &samples,
        ),
        light.apply(
            &images.narrow(0, 0, batch),
            Key::new(0, Purpose::View(1), 0),
            &samples,
        ),
    );
    sync();
    let (mut done, mut step) = (0i64, 0u64);
    let start = Instant::now();
    loop {
        let mut offset = 0;
        while offset + batch <= count {
            let slice = images.narrow(0, offset, batch);
            let indices: Vec<u64> = (offset as u64..(offset + batch) as u64).collect();
            let _ = strong.apply(&slice, Key::new(1, Purpose::View(0), step), &indices);
            let _ = light.apply(&slice, Key::new(1, Purpose::View(1), step), &indices);
            offset += batch;
            done += batch;
            step += 1;
        }
        sync();
        if start.elapsed() >= MEASURE {
            return done as f64 / start.elapsed().as_secs_f64();
        }
    }
}

/// torchvision's figures for the same images: `(PIL + v1, uint8 tensor + v2)` images/s.
fn torchvision_rate(images: &Tensor, size: usize) -> Result<(f64, f64, String), String> {
    let shape = images.size();
    let numel = images.numel();
    let mut bytes = vec![0u8; numel];
    images.copy_data(&mut bytes, numel);
    let raw = std::env::temp_dir().join(format!("fa-bench-{}-{size}.raw", std::process::id()));
    std::fs::write(&raw, &bytes).map_err(|e| e.to_string())?;
    let python = std::env::var("FA_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv/bin/python")
            .display()
            .to_string()
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/augment_torchvision.py");
    let mut args: Vec<String> = vec![script.display().to_string(), raw.display().to_string()];
    args.extend(shape.iter().map(|d| d.to_string()));
    args.extend([size.to_string(), MEASURE.as_secs_f64().to_string()]);
    let output = Command::new(&python)
        .args(&args)
        .output()
        .map_err(|e| format!("{python}: {e}"));
    let _ = std::fs::remove_file(&raw);
    let output = output?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    let get = |key: &str| json[key].as_f64().ok_or(format!("no `{key}` in {line}"));
    Ok((
        get("pil_v1")?,
        get("tensor_v2")?,
        format!(
            "torchvision {}, {} threads",
            json["torchvision"].as_str().unwrap_or("?"),
            json["threads"]
        ),
    ))
}

/// The CPU's model name from /proc/cpuinfo (what `lscpu` shows).
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find_map(|line| {
        line.strip_prefix("model name")
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
    });
    let cores = info
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    format!(
        "{} × {cores}",
        model.unwrap_or_else(|| "unknown".to_string())
    )
}

/// The 1-, 5- and 15-minute load averages: other processes compete with the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let Some(root) = datasets() else {
        println!("skipping: CIFAR-10 archives not found (../shared/datasets/cifar10)");
        return;
    };
    println!(
        "cpu: {}, torch threads: {}",
        cpu_model(),
        tch::get_num_threads()
    );
    println!("load average at start: {}", load_average());

    let start = Instant::now();
    match load(&config(32), &root, "train", &LoadOptions::default()) {
        Ok(train) => {
            let seconds = start.elapsed().as_secs_f64();
            println!(
                "decode cifar10 train.tar.gz: {} images in {seconds:.2} s ({:.0} images/s)",
                train.len,
                train.len as f64 / seconds
            );
        }
        Err(error) => println!("decode cifar10 train.tar.gz failed: {error}"),
    }

    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    }
    // (side, images, batch on CPU): 224² images are CIFAR test images enlarged on load.
    for (size, count, cpu_batch) in [(32usize, 2048usize, 256i64), (224, 256, 32)] {
        let set = load(
            &config(size),
            &root,
            "test",
            &LoadOptions {
                limit: Some(count),
                ..Default::default()
            },
        )
        .unwrap();
        let images = to_tensor(&set, Device::Cpu);
        for &device in &devices {
            let batch = if device == Device::Cpu {
                cpu_batch
            } else {
                512.min(count as i64)
            };
            let images = if device == Device::Cpu {
                images.shallow_clone()
            } else {
                images.repeat([512 / count as i64 + 1, 1, 1, 1]).narrow(
                    0,
                    0,
                    2048.max(count as i64),
                )
            };
            let rate = fa_rate(&images, size, batch, device);
            println!(
                "fa BYOL two views {size}x{size} on {device:?}, batch {batch}: {rate:.0} images/s"
            );
            if device == Device::Cpu {
                match torchvision_rate(&images, size) {
                    Ok((pil, tensor, about)) => {
                        println!("torchvision BYOL two views {size}x{size} ({about}), one image at a time: PIL+v1 {pil:.0} images/s, uint8 tensor+v2 {tensor:.0} images/s");
                        println!(
                            "ratio fa / best torchvision at {size}x{size}: {:.2}",
                            rate / pil.max(tensor)
                        );
                    }
                    Err(error) => println!("torchvision comparison skipped: {error}"),
                }
            }
        }
    }
    println!("load average at end: {}", load_average());
}
