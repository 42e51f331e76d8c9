//! Parity with PyTorch: losses, FA operators, MLP heads and a ResNet-18 forward agree with
//! float64 references written by `scripts/fixtures_lower.py`.

mod support;

use std::collections::HashMap;

use fa_lang::ir::{FeatureShape, ModuleKind, Norm, Stem};
use fa_torch::lower::fa::{apply_mask, l2_normalize, mixup, straight_through, Bank};
use fa_torch::lower::layers::build_module;
use fa_torch::lower::loss::{byol_loss, info_nce};
use support::tensors::assert_close_relative;
use tch::{nn, Device, Kind, Tensor};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = support::project_path("tests/fixtures/lower").join(name);
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// A float32 copy of a float64 reference input.
fn input(values: &HashMap<String, Tensor>, name: &str) -> Tensor {
    values[name].to_kind(Kind::Float)
}

/// The closed-form weights of `scripts/fixtures_lower.py::synthetic`.
fn synthetic(name: &str, shape: &[i64]) -> Tensor {
    let numel: i64 = shape.iter().product();
    let phase = name.bytes().map(u64::from).sum::<u64>() % 1000;
    let phase = phase as f64 * 0.001;
    let base = (Tensor::arange(numel, (Kind::Double, Device::Cpu)) * 0.731 + phase)
        .sin()
        .view(shape);
    if name.ends_with("num_batches_tracked") {
        return Tensor::zeros(shape, (Kind::Int64, Device::Cpu));
    }
    if name.ends_with("running_var") {
        return 1.0 + 0.5 * &base * &base;
    }
    if name.ends_with("running_mean") || name.ends_with("bias") {
        return 0.1 * base;
    }
    if shape.len() == 1 {
        return 1.0 + 0.2 * base;
    }
    let fan_in: i64 = shape[1..].iter().product();
    base * (2.0 / fan_in as f64).sqrt()
}

/// Fills every tensor under `prefix.` with its synthetic value (named without the prefix).
fn load_synthetic(store: &nn::VarStore, prefix: &str) {
    tch::no_grad(|| {
        for (name, tensor) in store.variables() {
            let local = name.strip_prefix(&format!("{prefix}.")).expect("prefixed");
            let value = synthetic(local, &tensor.size());
            tensor.shallow_clone().copy_(&value);
        }
    });
}

fn grad_of(output: &Tensor, weights: &Tensor) {
    (output * weights).sum(Kind::Float).backward();
}

#[test]
fn info_nce_matches_pytorch() {
    let values = fixture("losses.safetensors");
    let a = input(&values, "infonce_a").set_requires_grad(true);
    let b = input(&values, "infonce_b").set_requires_grad(true);
    let loss = info_nce(&a, &b, 0.2);
    assert_close_relative(&loss.reshape([1]), &values["infonce_loss"], 1e-6, "loss");
    loss.backward();
    assert_close_relative(&a.grad(), &values["infonce_grad_a"], 1e-5, "grad a");
    assert_close_relative(&b.grad(), &values["infonce_grad_b"], 1e-5, "grad b");
}

#[test]
fn byol_loss_matches_pytorch() {
    let values = fixture("losses.safetensors");
    let p = input(&values, "byol_p").set_requires_grad(true);
    let z = input(&values, "byol_z").set_requires_grad(true);
    let loss = byol_loss(&p, &z);
    assert_close_relative(&loss.reshape([1]), &values["byol_loss"], 1e-6, "loss");
    loss.backward();
    assert_close_relative(&p.grad(), &values["byol_grad_p"], 1e-5, "grad p");
    assert_close_relative(&z.grad(), &values["byol_grad_z"], 1e-5, "grad z");
}

/// Runs `augment` on the unit fixture feature and checks its output and gradient.
fn check_fa(values: &HashMap<String, Tensor>, name: &str, augment: impl Fn(&Tensor) -> Tensor) {
    let f = input(values, "f").set_requires_grad(true);
    let out = augment(&l2_normalize(&f));
    assert_close_relative(&out, &values[&format!("{name}_out")], 1e-6, name);
    grad_of(&out, &input(values, "weights"));
    assert_close_relative(
        &f.grad(),
        &values[&format!("{name}_grad")],
        1e-5,
        &format!("{name} grad"),
    );
}

#[test]
fn mask_matches_pytorch() {
    let values = fixture("fa.safetensors");
    let mask = input(&values, "mask");
    check_fa(&values, "mask", |unit| apply_mask(unit, &mask));
}

#[test]
fn nn_lookup_and_straight_through_match_pytorch() {
    let values = fixture("fa.safetensors");
    let bank = Bank::from_tensors(
        input(&values, "bank"),
        values["bank_indices"].shallow_clone(),
        0,
    );
    let f = input(&values, "f");
    let found = bank.lookup(&l2_normalize(&f), &values["query_indices"], 3, true);
    assert!(found.indices.equal(&values["nn_indices"]), "{found:?}");
    for j in 0..3 {
        assert_close_relative(
            &found.features[j],
            &values[&format!("nn_{j}")],
            1e-6,
            "neighbour",
        );
        let neighbour = found.features[j].shallow_clone();
        check_fa(&values, &format!("nn_straight_{j}"), |unit| {
            straight_through(unit, &neighbour)
        });
    }
}

#[test]
fn mixup_with_each_noise_matches_pytorch() {
    let values = fixture("fa.safetensors");
    let lambda = input(&values, "lambda");
    let gaussian = input(&values, "gaussian");
    check_fa(&values, "mixup_gaussian", |unit| {
        mixup(unit, &gaussian, &lambda)
    });
    let partner = values["partner"].shallow_clone();
    check_fa(&values, "mixup_batch", |unit| {
        mixup(unit, &unit.detach().index_select(0, &partner), &lambda)
    });
    let bank = Bank::from_tensors(
        input(&values, "bank"),
        values["bank_indices"].shallow_clone(),
        0,
    );
    check_fa(&values, "mixup_nn", |unit| {
        let found = bank.lookup(unit, &values["query_indices"], 1, true);
        mixup(unit, &found.features[0], &lambda)
    });
}

#[test]
fn mlp_heads_match_pytorch() {
    let values = fixture("heads.safetensors");
    for (name, widths, last_norm) in [
        ("projector", vec![16, 16, 8], true),
        ("predictor", vec![16, 8], false),
    ] {
        let store = nn::VarStore::new(Device::Cpu);
        let kind = ModuleKind::Mlp {
            widths,
            norm: Norm::Batch,
            last_norm,
        };
        let module = build_module(
            &(store.root() / name),
            name,
            &kind,
            FeatureShape::Vector {
                width: 12,
                samples: 1,
            },
        )
        .unwrap();
        load_synthetic(&store, name);
        let x = input(&values, "x").set_requires_grad(true);
        let out = module.forward(&x, true);
        assert_close_relative(&out, &values[&format!("{name}_out")], 1e-5, name);
        grad_of(&out, &input(&values, &format!("{name}_weights")));
        assert_close_relative(
            &x.grad(),
            &values[&format!("{name}_grad_x")],
            1e-5,
            "grad x",
        );
        let w0 = &store.variables()[&format!("{name}.layers.0.linear.weight")];
        assert_close_relative(
            &w0.grad(),
            &values[&format!("{name}_grad_w0")],
            1e-5,
            "grad w0",
        );
        let running = &store.variables()[&format!("{name}.layers.0.bn.running_var")];
        assert_close_relative(
            running,
            &values[&format!("{name}_running_var0")],
            1e-6,
            "running var",
        );
        let eval = tch::no_grad(|| module.forward(&input(&values, "x"), false));
        assert_close_relative(&eval, &values[&format!("{name}_eval_out")], 1e-5, "eval");
    }
}

#[test]
fn resnet18_cifar_matches_torchvision() {
    let values = fixture("resnet18.safetensors");
    let store = nn::VarStore::new(Device::Cpu);
    let kind = ModuleKind::ResNet {
        depth: 18,
        stem: Stem::Cifar,
    };
    let shape = FeatureShape::Image {
        channels: 3,
        height: 32,
        width: 32,
    };
    let module = build_module(&(store.root() / "f"), "f", &kind, shape).unwrap();
    load_synthetic(&store, "f");
    let x = input(&values, "x").set_requires_grad(true);
    let out = module.forward(&x, false);
    // Float32 through 17 convolutions: 1e-5 of the largest output is what float32 sums of
    // up to 4,608 products keep; see the report for measured errors.
    assert_close_relative(&out, &values["eval_out"], 1e-5, "eval out");
    grad_of(&out, &input(&values, "weights"));
    assert_close_relative(&x.grad(), &values["eval_grad_x"], 1e-5, "grad x");
    assert_close_relative(
        &store.variables()["f.conv1.weight"].grad(),
        &values["eval_grad_conv1"],
        1e-5,
        "grad conv1",
    );
    let train = tch::no_grad(|| module.forward(&input(&values, "x"), true));
    // Training-mode batch norm over 2 × 4 × 4 values in layer4 amplifies float32 rounding:
    // PyTorch's own float32 result is `train_f32_error` (about 8e-5) off the float64 one, so
    // we ask for no more than twice that.
    let reference_error = values["train_f32_error"].double_value(&[0]);
    assert_close_relative(
        &train,
        &values["train_out"],
        (2.0 * reference_error).max(1e-5),
        "train out",
    );
    let running = &store.variables()["f.layer4.1.bn2.running_mean"];
    assert_close_relative(
        running,
        &values["train_running_mean_layer4"],
        1e-5,
        "running mean",
    );
}
