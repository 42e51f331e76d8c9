//! `fa export --backbone`: the exported weights load strictly into torchvision's and timm's
//! ResNet-18 and ResNet-50 and give the same features as fa's backbone; the CIFAR stem is
//! refused for them and exported as a plain state dict; the EMA target exports on request.

mod support;

use fa_torch::export::{export_backbone, export_backbone_as, ExportEncoder, ExportFormat};
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
        tensorboard: false,
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
        &[
            "torchvision".as_ref(),
            "18".as_ref(),
            backbone.as_os_str(),
            io.as_os_str(),
        ],
        "torchvision disagrees",
    );
}

/// A BYOL model on Fashion-MNIST (grey images fed as three channels) with the encoder
/// `encoder`; `t` is the EMA target of `f -> g`.
fn byol_text(encoder: &str) -> String {
    format!(
        "model export_check
data {{ format: idx, path: \"fashion-mnist\", image_size: 28, channels: 3, batch: 8, limit: 16 }}
pipeline p = [crop(scale: (0.6, 1.0)), flip]
encoder f = {encoder}
projector g = mlp(64, 32)
predictor q = mlp(64, 32)
target t = ema(f -> g, momentum: 0.99, final: 1.0)
online = view(p) -> f -> g -> q
target_z = view(p) -> t
loss byol {{ online ~ target_z }}
optim {{ method: sgd, lr: 0.05 per 256, momentum: 0.9, weight_decay: 0, warmup: 0 }}
train {{ epochs: 1, seed: 1, checkpoint_every: 1 }}
"
    )
}

/// Trains `valid` for one step into a new folder under `parent`.
fn one_step(
    valid: &fa_lang::valid::ValidModel,
    parent: &std::path::Path,
    name: &str,
) -> std::path::PathBuf {
    let run = parent.join(name);
    let options = TrainOptions {
        out: run.clone(),
        device: Device::Cpu,
        data_root: fashion_mnist_root(),
        resume: false,
        overwrite: false,
        log: LogFormat::Quiet,
        max_steps: Some(1),
        skip_eval: true,
        source: "{}".into(),
        tensorboard: false,
    };
    train(valid, &options).expect("one step trains");
    run
}

fn fashion_mnist_root() -> std::path::PathBuf {
    let root = std::path::PathBuf::from(
        std::env::var("FA_DATA_ROOT").unwrap_or_else(|_| "/usr/share/datasets".into()),
    );
    assert!(
        root.join("fashion-mnist/train-images-idx3-ubyte.gz")
            .exists(),
        "Fashion-MNIST is missing under {}; ./dev installs it",
        root.display()
    );
    root
}

/// [`byol_text`] without the EMA target (a SimCLR-like model), half the weights to build.
fn simclr_text(encoder: &str) -> String {
    byol_text(encoder)
        .replace("target t = ema(f -> g, momentum: 0.99, final: 1.0)\n", "")
        .replace(
            "target_z = view(p) -> t",
            "target_z = view(p) -> f -> g -> stopgrad",
        )
        .replace("loss byol", "loss infonce")
}

#[test]
fn torchvision_and_timm_resnets_18_and_50_load_the_exports_strictly_with_equal_features() {
    let dir = tempfile::tempdir().unwrap();
    let python = venv_python();
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for depth in ["18", "50"] {
        let text = simclr_text(&format!("resnet{depth}(stem: imagenet)"));
        let valid = support::models::compile_text("export_check.fa", &text)
            .cells
            .remove(0)
            .1;
        let run = one_step(&valid, dir.path(), &format!("run{depth}"));
        let (_vs, network, _) = load_network(&valid, &run, Device::Cpu).expect("loads");
        tch::manual_seed(5);
        let input = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let features = network.backbone(&input);
        let io = run.join("io.safetensors");
        Tensor::write_safetensors(&[("input", &input), ("features", &features)], &io).unwrap();
        // ResNet-18 is exported in both formats (the files are the same: timm's ResNets use
        // torchvision's keys); ResNet-50 once, as timm, and checked by both libraries.
        let formats: &[(&str, ExportFormat)] = if depth == "18" {
            &[
                ("torchvision", ExportFormat::Torchvision),
                ("timm", ExportFormat::Timm),
            ]
        } else {
            &[("timm", ExportFormat::Timm)]
        };
        let mut written = Vec::new();
        for (library, format) in formats {
            let out = run.join(format!("{library}.safetensors"));
            let count = export_backbone_as(&valid, &run, &out, *format, ExportEncoder::Online)
                .expect("exports");
            // torchvision's resnet18 state_dict without `fc`: 60 parameters and 60 batch-norm
            // buffers (running mean, running var, batches tracked for each of 20 norms).
            if depth == "18" {
                assert_eq!(count, 120);
            }
            written.push(out);
        }
        if let [first, second] = &written[..] {
            assert_eq!(
                std::fs::read(first).unwrap(),
                std::fs::read(second).unwrap()
            );
        }
        let last = written.last().unwrap();
        for library in ["torchvision", "timm"] {
            for arg in [library, depth] {
                args.push(arg.into());
            }
            args.push(last.clone().into_os_string());
            args.push(io.clone().into_os_string());
        }
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    run_python(
        &python,
        &project_path("scripts/check_export.py"),
        &args,
        "a strict load or the features disagree",
    );
}

#[test]
fn the_target_encoder_is_the_ema_copy_and_the_cifar_stem_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = byol_text("resnet18(stem: cifar)");
    let valid = support::models::compile_text("export_check.fa", &text)
        .cells
        .remove(0)
        .1;
    let run = one_step(&valid, dir.path(), "run");

    // torchvision and timm cannot load a 3×3 conv1 into their 7×7 one: refused, saying why
    // and what to do instead, before anything is written.
    for format in [ExportFormat::Torchvision, ExportFormat::Timm] {
        let out = dir.path().join("refused.safetensors");
        let error =
            export_backbone_as(&valid, &run, &out, format, ExportEncoder::Online).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("CIFAR stem")
                && message.contains("7×7")
                && message.contains(format.name()),
            "{message}"
        );
        let help = miette::Diagnostic::help(&error)
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(help.contains("--format state-dict"), "{help}");
        assert!(!out.exists());
    }

    // The plain state dict holds fa's names: exactly the checkpoint's tensors of `f`.
    let checkpoint = fa_torch::train::checkpoint::latest(&run).unwrap();
    let stored = Tensor::read_safetensors(&checkpoint).unwrap();
    let tensors_under = |prefix: &str| -> Vec<(String, Tensor)> {
        let mut found: Vec<(String, Tensor)> = stored
            .iter()
            .filter_map(|(name, t)| {
                name.strip_prefix(prefix)
                    .map(|n| (n.to_string(), t.shallow_clone()))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    };
    let read = |path: &std::path::Path| {
        let mut found = Tensor::read_safetensors(path).unwrap();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    };
    let online_out = dir.path().join("online.safetensors");
    let target_out = dir.path().join("target.safetensors");
    export_backbone_as(
        &valid,
        &run,
        &online_out,
        ExportFormat::StateDict,
        ExportEncoder::Online,
    )
    .unwrap();
    export_backbone_as(
        &valid,
        &run,
        &target_out,
        ExportFormat::StateDict,
        ExportEncoder::Target,
    )
    .unwrap();
    let online = read(&online_out);
    let target = read(&target_out);
    let expected_online = tensors_under("model/f.");
    let expected_target = tensors_under("model/ema.t.f.");
    assert_eq!(online.len(), 120);
    assert_eq!(target.len(), online.len());
    for ((name, tensor), (expected_name, expected)) in online.iter().zip(&expected_online) {
        assert_eq!(name, expected_name);
        assert!(tensor.equal(expected), "{name}");
    }
    for ((name, tensor), (expected_name, expected)) in target.iter().zip(&expected_target) {
        assert_eq!(name, expected_name);
        assert!(tensor.equal(expected), "{name}");
    }
    // After one step the EMA copy (0.99 of the start + 0.01 of the online weights) is not
    // the online encoder.
    let conv = |list: &[(String, Tensor)]| {
        list.iter()
            .find(|(n, _)| n == "conv1.weight")
            .unwrap()
            .1
            .shallow_clone()
    };
    assert!(!conv(&online).equal(&conv(&target)));

    // A model without a target has no target encoder to export.
    let simclr = simclr_text("resnet18(stem: cifar)");
    let valid = support::models::compile_text("simclr.fa", &simclr)
        .cells
        .remove(0)
        .1;
    let run = one_step(&valid, dir.path(), "simclr");
    let error = export_backbone_as(
        &valid,
        &run,
        &dir.path().join("x.safetensors"),
        ExportFormat::StateDict,
        ExportEncoder::Target,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no EMA target of its encoder `f`"),
        "{error}"
    );
}
