//! The performance paths must not change results: the baseline cache is hit the second time
//! and keyed by model, seed and data; channels_last gives the accuracies of the default
//! layout; the peak memory reaches the summary and the metrics. Each run is the tiny model
//! for two steps with its kNN evaluation, in a child process whose environment (cache
//! folder, memory layout) is its own.

mod support;

use std::path::{Path, PathBuf};

use fa_torch::train::metrics::{read_metrics, Record};
use fa_torch::train::{train, LogFormat, Summary, TrainOptions};
use support::data::fashion_root;
use support::models::model;
use tch::Device;

/// Set in a child process: the run folder to train into.
const CHILD_OUT: &str = "FA_TEST_PERF_OUT";
/// Set in a child process: the training seed.
const CHILD_SEED: &str = "FA_TEST_PERF_SEED";

/// Trains the tiny model for two steps into `out` with its kNN evaluation.
fn tiny_run(out: &Path, seed: &str) -> Summary {
    let seed = format!("train.seed={seed}");
    let valid = model("tests/train/tiny.fa", &["data.limit=512", seed.as_str()]);
    let options = TrainOptions {
        out: out.to_path_buf(),
        device: Device::Cpu,
        data_root: fashion_root(),
        resume: false,
        overwrite: false,
        log: LogFormat::Quiet,
        max_steps: Some(2),
        skip_eval: false,
        source: "{}".into(),
        tensorboard: false,
    };
    train(&valid, &options).unwrap_or_else(|error| panic!("training failed: {error}"))
}

/// The child side: trains into `$FA_TEST_PERF_OUT` when it is set; returns whether it was.
fn child_run() -> bool {
    match std::env::var_os(CHILD_OUT) {
        Some(out) => {
            let seed = std::env::var(CHILD_SEED).unwrap_or_else(|_| "3".into());
            tiny_run(Path::new(&out), &seed);
            true
        }
        None => false,
    }
}

/// Runs the test `name` in a child process that trains into `out` with `environment` added.
fn run_child(name: &str, out: &Path, environment: &[(&str, Option<&str>)]) -> Summary {
    let mut all = vec![(CHILD_OUT, Some(out.to_str().expect("UTF-8 temporary path")))];
    all.extend_from_slice(environment);
    support::process::run_test_in_child(name, &all);
    let text =
        std::fs::read_to_string(out.join("summary.json")).expect("the child wrote a summary");
    serde_json::from_str(&text).expect("summary.json parses")
}

fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache.join("baselines")) {
        Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn the_baselines_are_computed_once_per_model_seed_and_data() {
    if child_run() {
        return;
    }
    let name = "the_baselines_are_computed_once_per_model_seed_and_data";
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_text = cache.to_str().unwrap();
    let first = run_child(
        name,
        &dir.path().join("first"),
        &[("FA_CACHE_DIR", Some(cache_text))],
    );
    let entries = cache_entries(&cache);
    assert_eq!(
        entries.len(),
        1,
        "one entry after the first run: {entries:?}"
    );
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&entries[0]).unwrap()).unwrap();
    assert_eq!(
        stored["random_init_knn"]["top1"].as_f64(),
        first.random_init_knn.map(|a| a.top1)
    );
    assert_eq!(
        stored["pixels_knn"]["top1"].as_f64(),
        first.pixels_knn.map(|a| a.top1)
    );

    // A marked entry shows that the second run reads it instead of computing again.
    let mut marked = stored.clone();
    marked["random_init_knn"]["top1"] = serde_json::json!(1.25);
    std::fs::write(&entries[0], marked.to_string()).unwrap();
    let second = run_child(
        name,
        &dir.path().join("second"),
        &[("FA_CACHE_DIR", Some(cache_text))],
    );
    assert_eq!(second.random_init_knn.unwrap().top1, 1.25);
    assert_eq!(second.pixels_knn, first.pixels_knn);
    // The trained encoder is never cached.
    assert_eq!(second.knn, first.knn);

    // Another seed is another random initialisation: a second entry.
    let reseeded = run_child(
        name,
        &dir.path().join("reseeded"),
        &[("FA_CACHE_DIR", Some(cache_text)), (CHILD_SEED, Some("4"))],
    );
    assert_eq!(cache_entries(&cache).len(), 2);
    assert_ne!(reseeded.random_init_knn.unwrap().top1, 1.25);
}

#[test]
fn channels_last_keeps_the_accuracies_of_the_default_layout() {
    if child_run() {
        return;
    }
    let name = "channels_last_keeps_the_accuracies_of_the_default_layout";
    let dir = tempfile::tempdir().unwrap();
    let run = |label: &str, layout: &str| {
        run_child(
            name,
            &dir.path().join(label),
            &[
                ("FA_CACHE_DIR", Some("off")),
                ("FA_CHANNELS_LAST", Some(layout)),
                ("FA_EVAL_PRECISION", Some("f32")),
            ],
        )
    };
    let default_layout = run("nchw", "0");
    let channels_last = run("nhwc", "1");
    // The two layouts sum in different orders, so features differ by rounding (about 1e-6
    // relative); over 10,000 test images that may move a tie or two, never more.
    let within_two_samples = |a: Option<fa_torch::eval::Accuracy>,
                              b: Option<fa_torch::eval::Accuracy>| {
        let (a, b) = (a.expect("evaluated"), b.expect("evaluated"));
        (a.top1 - b.top1).abs() <= 0.02 && (a.top5 - b.top5).abs() <= 0.02
    };
    assert!(
        within_two_samples(default_layout.knn, channels_last.knn),
        "kNN {:?} vs {:?}",
        default_layout.knn,
        channels_last.knn
    );
    assert!(within_two_samples(
        default_layout.random_init_knn,
        channels_last.random_init_knn
    ));
    assert_eq!(default_layout.pixels_knn, channels_last.pixels_knn);
}

#[test]
fn bfloat16_extraction_keeps_the_accuracies_and_has_baselines_of_its_own() {
    if child_run() {
        return;
    }
    let name = "bfloat16_extraction_keeps_the_accuracies_and_has_baselines_of_its_own";
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |precision: &str| {
        run_child(
            name,
            &dir.path().join(precision),
            &[
                ("FA_CACHE_DIR", Some(cache.to_str().unwrap())),
                ("FA_EVAL_PRECISION", Some(precision)),
            ],
        )
    };
    let f32 = run("f32");
    let bf16 = run("bf16");
    assert_eq!(f32.eval_precision.as_deref(), Some("f32"));
    assert_eq!(bf16.eval_precision.as_deref(), Some("bf16"));
    // bfloat16 keeps 8 bits of mantissa: features move by about 3e-3 relative, which may
    // flip the vote of test images near a boundary, a few in a thousand at most.
    let close = |a: Option<fa_torch::eval::Accuracy>, b: Option<fa_torch::eval::Accuracy>| {
        let (a, b) = (a.expect("evaluated"), b.expect("evaluated"));
        (a.top1 - b.top1).abs() <= 0.5
    };
    assert!(
        close(f32.knn, bf16.knn),
        "kNN {:?} vs {:?}",
        f32.knn,
        bf16.knn
    );
    assert!(
        close(f32.random_init_knn, bf16.random_init_knn),
        "random init {:?} vs {:?}",
        f32.random_init_knn,
        bf16.random_init_knn
    );
    // Raw pixels go through no network: the same in either precision.
    assert_eq!(f32.pixels_knn, bf16.pixels_knn);
    // Each precision caches baselines of its own.
    assert_eq!(cache_entries(&cache).len(), 2);
    println!(
        "kNN f32 {:?} bf16 {:?}; random init f32 {:?} bf16 {:?}",
        f32.knn, bf16.knn, f32.random_init_knn, bf16.random_init_knn
    );
}

#[test]
fn the_peak_memory_reaches_the_summary_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let summary = tiny_run(dir.path(), "3");
    let peak = summary
        .peak_memory
        .expect("the summary has the peak memory");
    // libtorch alone keeps more than 100 MiB resident; no CUDA on the CPU.
    let rss = peak.rss_mib.expect("Linux reports VmHWM");
    assert!(rss > 100.0 && rss < 64.0 * 1024.0, "peak RSS {rss} MiB");
    assert_eq!(peak.cuda_mib, None);
    let records = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
    let in_eval = records.iter().find_map(|record| match record {
        Record::Eval { peak_memory, .. } => Some(*peak_memory),
        _ => None,
    });
    let in_eval = in_eval
        .expect("an eval record")
        .expect("with the peak memory");
    assert!(in_eval.rss_mib.unwrap() <= rss);
}
