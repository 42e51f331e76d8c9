//! `scripts/gpu-check.sh --small`: the prepared GPU check runs every section on the CPU at
//! small sizes (fa's step, both PyTorch loops, the NN-FA share, two short pre-trainings with
//! kNN) and writes its markdown and JSON results.
//!
//! It uses CIFAR-10 where the machine has it (`$FA_DATA_ROOT` or `../shared/datasets`);
//! elsewhere (CI from a clean clone: `./dev` does not install CIFAR-10) it writes archives of
//! the same layout holding random 32×32 JPEGs, which exercise the same code paths (the
//! figures of a small run mean nothing either way).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::process::{stderr, stdout, venv_python};

/// A data root with `cifar10/{train,test}.tar.gz`: the real CIFAR-10 when present, else 64
/// training and 20 test images per class of random pixels written under `scratch`.
fn cifar10_or_random(scratch: &Path, python: &Path) -> PathBuf {
    let candidates = [support::data::data_root(), support::data::shared_datasets()];
    if let Some(root) = candidates.iter().find(|root| {
        root.join("cifar10/train.tar.gz").is_file() && root.join("cifar10/test.tar.gz").is_file()
    }) {
        return root.clone();
    }
    let script = r#"
import io, os, sys, tarfile, torch
from torchvision.io import encode_jpeg
root = sys.argv[1]
os.makedirs(os.path.join(root, "cifar10"), exist_ok=True)
generator = torch.Generator().manual_seed(0)
for split, count in (("train", 64), ("test", 20)):
    with tarfile.open(os.path.join(root, "cifar10", f"{split}.tar.gz"), "w:gz") as tar:
        for label in range(10):
            for index in range(count):
                image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=generator)
                data = encode_jpeg(image).numpy().tobytes()
                info = tarfile.TarInfo(f"{split}/class{label}/{index:04d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
"#;
    let root = scratch.join("random-cifar10");
    let output = Command::new(python)
        .args(["-c", script])
        .arg(&root)
        .output()
        .expect("python runs");
    assert!(output.status.success(), "{}", stderr(&output));
    root
}

#[test]
fn the_gpu_check_runs_every_section_in_small_mode_on_the_cpu() {
    let out = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let python = venv_python();
    let data_root = cifar10_or_random(scratch.path(), &python);
    let fa_torch = Path::new(env!("CARGO_BIN_EXE_fa-torch"));
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(support::project_path("scripts/gpu-check.sh"))
        .arg(out.path())
        .arg("--small")
        .env("FA_BIN", fa_torch.parent().unwrap())
        .env("FA_DATA_ROOT", &data_root)
        .env("PYTHON", &python)
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
    for loop_name in ["fa", "fa_fused", "typical", "expert"] {
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
    // The one-rank data-parallel job (Gloo here, NCCL on a GPU) formed its group and trained.
    assert_eq!(json["dist_smoke"]["backend"], "gloo");
    assert_eq!(json["dist_smoke"]["status"], "ok");
    let markdown = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    for heading in [
        "## fa doctor",
        "## Training step",
        "## NN-FA share",
        "## Pre-training",
        "## Data-parallel smoke test (one rank, gloo): ok",
    ] {
        assert!(markdown.contains(heading), "{heading} missing:\n{markdown}");
    }
    assert!(markdown.contains("| fa train |"), "{markdown}");
    assert!(
        markdown.contains("note: data-parallel training on 1 ranks (Gloo)"),
        "{markdown}"
    );
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
