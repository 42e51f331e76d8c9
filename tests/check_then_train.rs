//! `fa check` passing means `fa train` gets past its first step (docs/reliability.md): a
//! property test generates models from the language's parts (encoders, heads, every FA method
//! and sample count, stop-gradients, EMA targets, both losses, symmetric terms, both
//! combines, both optimisers, batch and image sizes down to their minimum), and every model
//! that compiles without errors trains one step on a synthetic image folder, with no panic and
//! no error. proptest shrinks a failure to the smallest model that shows it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Clone, Debug)]
enum Encoder {
    ConvNet(Vec<usize>),
    ResNet18,
}

#[derive(Clone, Debug)]
enum Fa {
    None,
    Nn {
        bank: usize,
        k: usize,
    },
    Mask {
        rate: f64,
        k: usize,
    },
    Mixup {
        alpha: f64,
        noise: &'static str,
        k: usize,
    },
}

#[derive(Clone, Debug)]
struct Spec {
    channels: usize,
    image_size: usize,
    batch: usize,
    encoder: Encoder,
    projector: Vec<usize>,
    projector_norm: bool,
    predictor: bool,
    ema: bool,
    fa: Fa,
    byol: bool,
    symmetric: bool,
    free: bool,
    lars: bool,
    accumulate: usize,
}

fn encoder() -> impl Strategy<Value = Encoder> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(vec![2usize, 4, 8]), 1..=4).prop_map(Encoder::ConvNet),
        1 => Just(Encoder::ResNet18),
    ]
}

fn fa() -> impl Strategy<Value = Fa> {
    prop_oneof![
        Just(Fa::None),
        (1usize..=40, 1usize..=3).prop_map(|(bank, k)| Fa::Nn { bank, k }),
        (0.0f64..0.45, 1usize..=3).prop_map(|(rate, k)| Fa::Mask { rate, k }),
        (
            0.05f64..1.0,
            prop::sample::select(vec!["nn(bank: 16)", "batch", "gaussian"]),
            1usize..=3
        )
            .prop_map(|(alpha, noise, k)| Fa::Mixup { alpha, noise, k }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            prop::sample::select(vec![1usize, 3]),
            8usize..=20,
            1usize..=6,
        ),
        (
            encoder(),
            prop::collection::vec(2usize..=12, 1..=2),
            any::<bool>(),
        ),
        (any::<bool>(), any::<bool>(), fa()),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            1usize..=2,
        ),
    )
        .prop_map(
            |(
                (channels, image_size, batch),
                (encoder, projector, projector_norm),
                (predictor, ema, fa),
                (byol, symmetric, free, lars, accumulate),
            )| Spec {
                channels,
                image_size,
                batch,
                encoder,
                projector,
                projector_norm,
                predictor,
                ema,
                fa,
                byol,
                symmetric,
                free,
                lars,
                accumulate,
            },
        )
}

fn list(values: &[usize]) -> String {
    values
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `.fa` source of a spec.
fn source(spec: &Spec) -> String {
    let encoder = match &spec.encoder {
        Encoder::ConvNet(widths) => format!("convnet({})", list(widths)),
        Encoder::ResNet18 => "resnet18(stem: cifar)".to_string(),
    };
    let norm = if spec.projector_norm { "batch" } else { "none" };
    let width = *spec.projector.last().unwrap();
    let mut text = format!(
        r#"model generated
data {{ format: image_folder, path: "synthetic", image_size: {size}, channels: {channels}, batch: {batch} }}
pipeline p = {pipeline}
encoder f = {encoder}
projector g = mlp({projector}, norm: {norm})
"#,
        size = spec.image_size,
        channels = spec.channels,
        batch = spec.batch,
        projector = list(&spec.projector),
        pipeline = if spec.channels == 3 {
            "[crop(scale: (0.5, 1.0)), flip, jitter, grayscale, blur(p: 0.5), solarize(p: 0.2), normalize]"
        } else {
            "[crop(scale: (0.5, 1.0)), flip, normalize]"
        },
    );
    if spec.predictor {
        text += &format!("predictor q = mlp(8, {width})\n");
    }
    if spec.ema {
        text += "target t = ema(f -> g, momentum: 0.9)\n";
    }
    let head = if spec.predictor { " -> q" } else { "" };
    text += &format!("online = view(p) -> f -> g{head}\n");
    if spec.ema {
        text += "other = view(p) -> t\n";
    } else {
        text += "other = view(p) -> f -> g -> stopgrad\n";
    }
    let fa = match &spec.fa {
        Fa::None => None,
        Fa::Nn { bank, k } => Some(format!("nn(bank: {bank}, k: {k})")),
        Fa::Mask { rate, k } => Some(format!("mask(rate: {rate:.3}, k: {k})")),
        Fa::Mixup { alpha, noise, k } => {
            Some(format!("mixup(alpha: {alpha:.3}, noise: {noise}, k: {k})"))
        }
    };
    let symmetric = if spec.symmetric { "symmetric " } else { "" };
    let loss = if spec.byol {
        "byol"
    } else {
        "infonce(tau: 0.2)"
    };
    let combine = if spec.free { "free" } else { "mean" };
    text += &format!("loss {loss} {{\n  {symmetric}online ~ other\n");
    if let Some(fa) = fa {
        text = text.replace("loss ", &format!("augmented = other -> fa {fa}\nloss "));
        text += &format!("  {symmetric}online ~ augmented\n");
    }
    text += &format!("}} combine {combine}\n");
    let method = if spec.lars {
        "lars(trust: 0.02, clip: true)"
    } else {
        "sgd"
    };
    text += &format!(
        "optim {{ method: {method}, lr: 0.1 per 256, momentum: 0.9, weight_decay: 1e-4, warmup: 0, accumulate: {} }}\n",
        spec.accumulate
    );
    text += "train { epochs: 1, seed: 1, checkpoint_every: 1 }\n";
    text
}

/// Two classes of six images in `train/` and two of three in `test/`, in colour and grey
/// (the grey ones load into 1-channel models; 3-channel models replicate nothing: the folder
/// is written in the spec's channel count by the caller).
fn write_folder(root: &Path, channels: usize) {
    let base = root.join("synthetic");
    for (split, count) in [("train", 6u32), ("test", 3)] {
        for class in ["a", "b"] {
            let folder = base.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for index in 0..count {
                let seed = index * 7 + class.len() as u32 * 13 + split.len() as u32;
                let path = folder.join(format!("{index}.png"));
                if channels == 1 {
                    image::GrayImage::from_fn(24, 24, |x, y| {
                        image::Luma([((x * 11 + y * 5 + seed * 29) % 256) as u8])
                    })
                    .save(&path)
                    .unwrap();
                } else {
                    image::RgbImage::from_fn(24, 24, |x, y| {
                        image::Rgb([
                            ((x * 11 + seed * 29) % 256) as u8,
                            ((y * 7 + seed * 3) % 256) as u8,
                            ((x * y + seed) % 256) as u8,
                        ])
                    })
                    .save(&path)
                    .unwrap();
                }
            }
        }
    }
}

#[test]
fn every_generated_model_that_checks_trains_one_step() {
    tch::set_num_threads(1);
    let data = tempfile::tempdir().unwrap();
    let grey = data.path().join("grey");
    let colour = data.path().join("colour");
    write_folder(&grey, 1);
    write_folder(&colour, 3);

    let checked = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&spec(), |spec| {
        let text = source(&spec);
        let compiled = match fa_lang::driver::compile_source("generated.fa", &text, &[]) {
            Ok(compiled) => compiled,
            Err(_) => {
                refused.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        };
        checked.fetch_add(1, Ordering::Relaxed);
        let (_, valid) = &compiled.cells[0];
        let out = tempfile::tempdir().unwrap();
        let options = fa_torch::train::TrainOptions {
            out: out.path().join("run"),
            device: tch::Device::Cpu,
            data_root: if spec.channels == 1 {
                grey.clone()
            } else {
                colour.clone()
            },
            resume: false,
            overwrite: false,
            log: fa_torch::train::LogFormat::Quiet,
            max_steps: Some(1),
            skip_eval: true,
            source: fa_torch::train::stored_model::to_json(valid.model()),
            tensorboard: false,
        };
        let summary = fa_torch::train::train(valid, &options);
        prop_assert!(summary.is_ok(), "{text}\n{:?}", summary.err());
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let checked = checked.into_inner();
    eprintln!(
        "{checked} models checked and trained, {} refused by fa check",
        refused.into_inner()
    );
    assert!(
        checked >= 24,
        "too few generated models pass fa check ({checked} of 48)"
    );
}
