//! `fa export --backbone`: the exported weights load into torchvision's ResNet-18 and give
//! the same features as fa's backbone.

mod support;

use fa_torch::export::export_backbone;
use fa_torch::train::{load_network, train, LogFormat, TrainOptions};
use support::data::cifar10_root;
use support::models::model;
use support::process::{run_python, venv_python};
use support::project_path;
use tch::{Device, Kind, Tensor};

#[test]
#[ignore = "needs CIFAR-10 from ../shared/datasets, which ./dev does not install; run with --ignored"]
fn an_exported_resnet18_backbone_loads_into_torchvision_and_computes_the_same_features() {
    let root = cifar10_root();
    let python = venv_python();
    let valid = model(
        "models/cifar10/parallel_predictor.fa",
        &[
            "fa=none",
            "f.stem=imagenet",
            "data.batch=8",
            "data.limit=16",
            "train.epochs=1",
        ],
    );
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

    run_python(
        &python,
        &project_path("scripts/check_export.py"),
        &[backbone.as_os_str(), io.as_os_str(), "18".as_ref()],
        "torchvision disagrees",
    );
}
