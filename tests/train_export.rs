//! `fa export --backbone`: the exported weights load into torchvision's ResNet-18 and give
//! the same features as fa's backbone.

use std::path::{Path, PathBuf};
use std::process::Command;

use fa_lang::driver::compile_file;
use fa_lang::resolve::Override;
use fa_torch::export::export_backbone;
use fa_torch::train::{load_network, train, LogFormat, TrainOptions};
use tch::{Device, Kind, Tensor};

fn venv_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    python.exists().then_some(python)
}

#[test]
fn an_exported_resnet18_backbone_loads_into_torchvision_and_computes_the_same_features() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    let root = if shared.join("cifar10/train.tar.gz").exists() {
        shared
    } else {
        PathBuf::from("/work/shared/datasets")
    };
    let (Some(python), true) = (venv_python(), root.join("cifar10/train.tar.gz").exists()) else {
        eprintln!("skipped: needs .venv with torchvision and ../shared/datasets/cifar10");
        return;
    };
    let overrides: Vec<Override> = [
        "fa=none",
        "f.stem=imagenet",
        "data.batch=8",
        "data.limit=16",
        "train.epochs=1",
    ]
    .iter()
    .map(|o| o.parse().unwrap())
    .collect();
    let compiled = compile_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cifar10/parallel_predictor.fa"),
        &overrides,
    )
    .unwrap_or_else(|report| panic!("{}", fa_lang::diag::render(&report, 100, false)));
    let valid = compiled.cells.into_iter().next().unwrap().1;
    let run = tempfile::tempdir().unwrap();
    let options = TrainOptions {
        out: run.path().to_path_buf(),
        device: Device::Cpu,
        data_root: root,
        resume: false,
        overwrite: false,
        log: LogFormat::Quiet,
        max_steps: Some(1),
        skip_eval: true,
        source: "{}".into(),
    };
    train(&valid, &options).expect("one step trains");

    let backbone = run.path().join("backbone.safetensors");
    let count = export_backbone(&valid, run.path(), &backbone).expect("exports");
    // torchvision's resnet18 state_dict without `fc`: 60 parameters and 60 batch-norm
    // buffers (running mean, running var, batches tracked for each of 20 norms).
    assert_eq!(count, 120);

    let (_vs, network, _) = load_network(&valid, run.path(), Device::Cpu).expect("loads");
    tch::manual_seed(11);
    let input = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let features = network.backbone(&input);
    assert_eq!(features.size(), vec![2, 512]);
    let io = run.path().join("io.safetensors");
    Tensor::write_safetensors(&[("input", &input), ("features", &features)], &io).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_export.py");
    let output = Command::new(python)
        .arg(script)
        .arg(&backbone)
        .arg(&io)
        .arg("18")
        .output()
        .expect("python runs");
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "torchvision disagrees: {said}");
}
