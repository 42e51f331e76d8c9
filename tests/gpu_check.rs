//! `scripts/gpu-check.sh --small`: the prepared GPU check runs every section on the CPU at
//! small sizes (fa's step, both PyTorch loops, the NN-FA share, two short pre-trainings with
//! kNN) and writes its markdown and JSON results.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::data::cifar10_root;
use support::process::{stderr, stdout, venv_python};

#[test]
fn the_gpu_check_runs_every_section_in_small_mode_on_the_cpu() {
    let out = tempfile::tempdir().unwrap();
    let fa_torch = Path::new(env!("CARGO_BIN_EXE_fa-torch"));
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(support::project_path("scripts/gpu-check.sh"))
        .arg(out.path())
        .arg("--small")
        .env("FA_BIN", fa_torch.parent().unwrap())
        .env("FA_DATA_ROOT", cifar10_root())
        .env("PYTHON", venv_python())
        .env("FA_CACHE_DIR", "off")
        .output()
        .expect("bash runs");
    let seconds = started.elapsed().as_secs_f64();
    let said = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(output.status.success(), "gpu-check failed\n{said}");
    eprintln!("gpu-check --small took {seconds:.0} s");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    let rate = |section: &str, key: &str| json[section][key]["images_per_s"].as_f64();
    for loop_name in ["fa", "typical", "expert"] {
        let images_per_s = rate("step", loop_name)
            .unwrap_or_else(|| panic!("no step figure for {loop_name}: {}", json["step"]));
        assert!(images_per_s > 0.0, "{loop_name}: {images_per_s}");
    }
    assert_eq!(json["step"]["expert_compile"]["skipped"], "small mode");
    for key in ["none", "nn_1024", "nn_4096"] {
        assert!(
            json["nn_share"][key]["ms_per_step"].as_f64().is_some(),
            "NN share {key}: {}",
            json["nn_share"]
        );
    }
    for cell in ["none", "nn"] {
        let knn = json["pretrain"]["cells"][cell]["knn"]["top1"].as_f64();
        let knn = knn.unwrap_or_else(|| panic!("pre-training {cell}: {}", json["pretrain"]));
        assert!((0.0..=100.0).contains(&knn));
    }
    assert_eq!(json["doctor"]["status"], "ok");
    let markdown = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    for heading in [
        "## fa doctor",
        "## Training step",
        "## NN-FA share",
        "## Pre-training",
    ] {
        assert!(markdown.contains(heading), "{heading} missing:\n{markdown}");
    }
    assert!(markdown.contains("| fa train |"), "{markdown}");
}

#[test]
fn the_gpu_check_explains_a_missing_output_folder_argument() {
    let output = Command::new("bash")
        .arg(support::project_path("scripts/gpu-check.sh"))
        .output()
        .expect("bash runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("gpu-check.sh OUT"),
        "{}",
        stderr(&output)
    );
}
