//! SGD and LARS against float64 PyTorch / reference fixtures, a hand-worked LARS step, the
//! exclusion of 1-D parameters under LARS (SGD decays every parameter, as PyTorch), gradient clipping and the optimiser state round-trip.

mod support;

use std::collections::BTreeMap;

use fa_lang::ir::{LearningRate, LrScaling, OptimConfig, OptimKind, Schedule, Span};
use fa_torch::optim::Optimizer;
use fa_torch::train::checkpoint::CheckpointError;
use support::tensors::assert_close_relative;
use tch::{Kind, Tensor};

const NAMES: [&str; 3] = ["a_weight", "b_bias", "c_conv"];

/// Agreement with the float64 references, relative to the largest reference magnitude.
const TOLERANCE: f64 = 1e-6;

fn fixtures() -> BTreeMap<String, Tensor> {
    let path = support::project_path("tests/fixtures/trainkit/optim.safetensors");
    Tensor::read_safetensors(&path)
        .expect("fixture readable")
        .into_iter()
        .collect()
}

fn scalar(fixtures: &BTreeMap<String, Tensor>, name: &str) -> f64 {
    fixtures[name].double_value(&[])
}

/// Parameters as leaf float64 tensors that require gradients.
fn parameters(named: &[(&str, Tensor)]) -> Vec<(String, Tensor)> {
    named
        .iter()
        .map(|(name, tensor)| (name.to_string(), tensor.copy().set_requires_grad(true)))
        .collect()
}

/// Shallow handles on the same parameter storage, for the optimiser to own.
fn handles(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.shallow_clone()))
        .collect()
}

/// Makes each parameter's gradient exactly `grads[name]`: the gradient of `Σ p·g` is `g`.
fn set_gradients(optimizer: &mut Optimizer, params: &[(String, Tensor)], grads: &[Tensor]) {
    optimizer.zero_grad();
    let loss = params
        .iter()
        .zip(grads)
        .map(|((_, parameter), grad)| (parameter * grad).sum(Kind::Double))
        .reduce(|left, right| left + right)
        .unwrap();
    loss.backward();
}

/// Runs three steps of `kind` on the fixture's parameters and gradients and compares every
/// step's parameters and the final momentum buffers with the fixture's `label/…` values.
fn check_against_fixture(kind: OptimKind, label: &str) {
    let fixtures = fixtures();
    let momentum = scalar(&fixtures, "config/momentum");
    let weight_decay = scalar(&fixtures, "config/weight_decay");
    let lrs = Vec::<f64>::try_from(&fixtures["config/lrs"]).unwrap();
    let initial: Vec<(&str, Tensor)> = NAMES
        .iter()
        .map(|name| (*name, fixtures[&format!("init/{name}")].copy()))
        .collect();
    let params = parameters(&initial);
    let mut optimizer = Optimizer::with_settings(kind, momentum, weight_decay, handles(&params));
    for (step, lr) in lrs.iter().enumerate() {
        let grads: Vec<Tensor> = NAMES
            .iter()
            .map(|name| fixtures[&format!("grad/{step}/{name}")].copy())
            .collect();
        set_gradients(&mut optimizer, &params, &grads);
        optimizer.step(*lr);
        for (name, parameter) in &params {
            assert_close_relative(
                parameter,
                &fixtures[&format!("{label}/{step}/{name}")],
                TOLERANCE,
                &format!("{label} step {step} {name}"),
            );
        }
    }
    let state: BTreeMap<String, Tensor> = optimizer.state().into_iter().collect();
    for name in NAMES {
        assert_close_relative(
            &state[&format!("optim/{name}")],
            &fixtures[&format!("{label}/buffer/{name}")],
            TOLERANCE,
            &format!("{label} buffer {name}"),
        );
    }
}

#[test]
fn sgd_matches_pytorch_decaying_every_parameter() {
    check_against_fixture(OptimKind::Sgd, "sgd");
}

#[test]
fn lars_matches_lightly() {
    let fixtures = fixtures();
    check_against_fixture(
        OptimKind::Lars {
            trust: scalar(&fixtures, "config/trust_low"),
            clip: false,
        },
        "lars",
    );
}

#[test]
fn lars_with_clip_matches_the_float64_reference() {
    let fixtures = fixtures();
    check_against_fixture(
        OptimKind::Lars {
            trust: scalar(&fixtures, "config/trust_low"),
            clip: true,
        },
        "lars_clip",
    );
    check_against_fixture(
        OptimKind::Lars {
            trust: scalar(&fixtures, "config/trust_high"),
            clip: true,
        },
        "lars_clip_high",
    );
}

/// One LARS step worked by hand: p = [3, 4] (‖p‖ = 5) as a 1×2 matrix, g = [0, 1] (‖g‖ = 1),
/// wd = 0.1, trust = 0.5, lr = 2, no momentum history.
/// d = g + wd·p = [0.3, 1.4]; local = 0.5·5 / (1 + 0.1·5) = 2.5 / 1.5 = 5/3.
/// Without clip: p − lr·local·d = [3 − 2·(5/3)·0.3, 4 − 2·(5/3)·1.4] = [2, 4 − 14/3].
/// With clip: min(local / lr, 1) = 5/6, so p − 2·(5/6)·d = [3 − 0.5, 4 − 7/3].
/// The bias b = [1] with gradient [0.5] takes the plain step b − lr·g = [0].
#[test]
fn lars_single_step_matches_hand_computation() {
    for (clip, expected) in [
        (false, [2.0, 4.0 - 14.0 / 3.0]),
        (true, [2.5, 4.0 - 7.0 / 3.0]),
    ] {
        let params = parameters(&[
            ("weight", Tensor::from_slice(&[3.0f64, 4.0]).reshape([1, 2])),
            ("bias", Tensor::from_slice(&[1.0f64])),
        ]);
        let mut optimizer = Optimizer::with_settings(
            OptimKind::Lars { trust: 0.5, clip },
            0.9,
            0.1,
            handles(&params),
        );
        let grads = [
            Tensor::from_slice(&[0.0f64, 1.0]).reshape([1, 2]),
            Tensor::from_slice(&[0.5f64]),
        ];
        set_gradients(&mut optimizer, &params, &grads);
        optimizer.step(2.0);
        let weight = Vec::<f64>::try_from(params[0].1.reshape([-1])).unwrap();
        for (actual, expected) in weight.iter().zip(expected) {
            assert!((actual - expected).abs() < 1e-12, "clip {clip}: {weight:?}");
        }
        let bias = params[1].1.double_value(&[0]);
        assert!(bias.abs() < 1e-12, "bias {bias}");
    }
}

#[test]
fn a_zero_weight_gets_the_unscaled_lars_step() {
    // ‖p‖ = 0 makes the local rate 1: p − lr·(g + wd·0) = −lr·g.
    let params = parameters(&[(
        "weight",
        Tensor::zeros([2, 2], (Kind::Double, tch::Device::Cpu)),
    )]);
    let mut optimizer = Optimizer::with_settings(
        OptimKind::Lars {
            trust: 0.02,
            clip: false,
        },
        0.9,
        0.1,
        handles(&params),
    );
    set_gradients(
        &mut optimizer,
        &params,
        &[Tensor::ones([2, 2], (Kind::Double, tch::Device::Cpu))],
    );
    optimizer.step(0.5);
    let weight = Vec::<f64>::try_from(params[0].1.reshape([-1])).unwrap();
    assert!(
        weight.iter().all(|value| (value + 0.5).abs() < 1e-12),
        "{weight:?}"
    );
}

/// The four parameters of a small network, each 1.0, for the weight-decay tests.
fn conv_bn_fc() -> Vec<(String, Tensor)> {
    let ones = |shape: &[i64]| Tensor::ones(shape, (Kind::Double, tch::Device::Cpu));
    parameters(&[
        ("conv.weight", ones(&[2, 1, 3, 3])),
        ("bn.weight", ones(&[2])),
        ("bn.bias", ones(&[2])),
        ("fc.weight", ones(&[3, 2])),
    ])
}

/// One step with zero gradients, where only weight decay moves a parameter: the decayed
/// ones become 1 − 0.1·0.5 = 0.95, the others stay 1.
fn check_decay_only_step(kind: OptimKind, decayed: &[&str]) {
    let params = conv_bn_fc();
    let config = OptimConfig {
        kind,
        lr: LearningRate {
            value: 0.1,
            scaling: LrScaling::Absolute,
            ..LearningRate::default()
        },
        momentum: 0.0,
        weight_decay: 0.5,
        warmup_epochs: 0.0,
        schedule: Schedule::Cosine,
        accumulate: 1,
        clip_grad_norm: None,
        span: Span::default(),
    };
    let mut optimizer = Optimizer::new(&config, handles(&params));
    assert_eq!(optimizer.decayed_parameters(), decayed);
    let zeros: Vec<Tensor> = params.iter().map(|(_, t)| t.zeros_like()).collect();
    set_gradients(&mut optimizer, &params, &zeros);
    optimizer.step(0.1);
    for (name, parameter) in &params {
        let expected = if decayed.contains(&name.as_str()) {
            0.95
        } else {
            1.0
        };
        let values = Vec::<f64>::try_from(parameter.reshape([-1])).unwrap();
        assert!(
            values.iter().all(|v| (v - expected).abs() < 1e-12),
            "{kind:?} {name}: {values:?}"
        );
    }
}

#[test]
fn sgd_decays_every_parameter_as_pytorch() {
    check_decay_only_step(
        OptimKind::Sgd,
        &["conv.weight", "bn.weight", "bn.bias", "fc.weight"],
    );
}

#[test]
fn lars_decays_only_parameters_with_two_or_more_dimensions() {
    // A zero gradient makes the LARS scale 1 (the norm test), so the step is the decay alone.
    check_decay_only_step(
        OptimKind::Lars {
            trust: 0.02,
            clip: false,
        },
        &["conv.weight", "fc.weight"],
    );
}

#[test]
fn clip_grad_norm_scales_to_the_maximum_and_reports_the_norm_before() {
    // Gradients [3, 0] and [[4]]: global norm √(9 + 16) = 5.
    let params = parameters(&[
        ("a", Tensor::zeros([2], (Kind::Double, tch::Device::Cpu))),
        ("b", Tensor::zeros([1, 1], (Kind::Double, tch::Device::Cpu))),
    ]);
    let mut optimizer = Optimizer::with_settings(OptimKind::Sgd, 0.0, 0.0, handles(&params));
    let grads = [
        Tensor::from_slice(&[3.0f64, 0.0]),
        Tensor::from_slice(&[4.0f64]).reshape([1, 1]),
    ];
    set_gradients(&mut optimizer, &params, &grads);
    assert!((optimizer.grad_norm() - 5.0).abs() < 1e-12);
    // Above the norm nothing changes.
    assert!((optimizer.clip_grad_norm(10.0) - 5.0).abs() < 1e-12);
    assert!((params[0].1.grad().double_value(&[0]) - 3.0).abs() < 1e-12);
    // Below it every gradient is scaled by 2 / (5 + 1e-6).
    assert!((optimizer.clip_grad_norm(2.0) - 5.0).abs() < 1e-12);
    let coefficient = 2.0 / (5.0 + 1e-6);
    assert!((params[0].1.grad().double_value(&[0]) - 3.0 * coefficient).abs() < 1e-12);
    assert!((params[1].1.grad().double_value(&[0, 0]) - 4.0 * coefficient).abs() < 1e-12);
    assert!((optimizer.grad_norm() - 5.0 * coefficient).abs() < 1e-12);
}

#[test]
fn restored_state_continues_exactly_like_the_uninterrupted_optimiser() {
    let fixtures = fixtures();
    let initial: Vec<(&str, Tensor)> = NAMES
        .iter()
        .map(|name| (*name, fixtures[&format!("init/{name}")].copy()))
        .collect();
    let grads = |step: usize| -> Vec<Tensor> {
        NAMES
            .iter()
            .map(|name| fixtures[&format!("grad/{step}/{name}")].copy())
            .collect()
    };
    // LARS through the multi-tensor path, SGD through the fused kernel.
    for kind in [
        OptimKind::Lars {
            trust: 0.02,
            clip: true,
        },
        OptimKind::Sgd,
    ] {
        let build = |params: &[(String, Tensor)]| {
            let mut optimizer = Optimizer::with_settings(kind, 0.9, 0.01, handles(params));
            optimizer.set_fused(true);
            optimizer
        };

        let straight = parameters(&initial);
        let mut optimizer = build(&straight);
        for step in 0..3 {
            set_gradients(&mut optimizer, &straight, &grads(step));
            optimizer.step(0.1);
        }

        let resumed = parameters(&initial);
        let mut first = build(&resumed);
        set_gradients(&mut first, &resumed, &grads(0));
        first.step(0.1);
        let state = first.state();
        let mut second = build(&resumed);
        second.load_state(&state).unwrap();
        for step in 1..3 {
            set_gradients(&mut second, &resumed, &grads(step));
            second.step(0.1);
        }
        for ((name, a), (_, b)) in straight.iter().zip(&resumed) {
            assert!(a.equal(b), "{kind:?}: {name} differs after resume");
        }
    }
}

#[test]
fn load_state_refuses_buffers_of_another_model() {
    let params = parameters(&[("w", Tensor::zeros([2, 3], (Kind::Double, tch::Device::Cpu)))]);
    let mut optimizer = Optimizer::with_settings(OptimKind::Sgd, 0.9, 0.0, handles(&params));
    let wrong = vec![
        (
            "optim/w".to_string(),
            Tensor::zeros([3, 2], (Kind::Double, tch::Device::Cpu)),
        ),
        (
            "optim/v".to_string(),
            Tensor::zeros([1], (Kind::Double, tch::Device::Cpu)),
        ),
        (
            "model/w".to_string(),
            Tensor::zeros([7], (Kind::Double, tch::Device::Cpu)),
        ),
    ];
    let error = optimizer.load_state(&wrong).unwrap_err();
    assert!(
        matches!(&error, CheckpointError::Mismatch { problems } if problems.len() == 2),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("`optim/w` has shape [3, 2]") && message.contains("expects [2, 3]"),
        "{message}"
    );
    assert!(
        message.contains("`optim/v` is in the checkpoint but not in the model"),
        "{message}"
    );
}

/// How an optimiser's step runs.
#[derive(Clone, Copy, Debug)]
enum Path {
    PerParameter,
    Foreach,
    /// SGD in libtorch's fused kernel (LARS runs the foreach path).
    Fused,
}

/// Runs four steps of an optimiser of `kind` on float32 parameters with random gradients,
/// the last parameter never given one, and returns the parameters and the momentum buffers
/// after each step.
fn trajectory(
    kind: OptimKind,
    momentum: f64,
    weight_decay: f64,
    path: Path,
) -> Vec<Vec<(String, Tensor)>> {
    let device = tch::Device::Cpu;
    tch::manual_seed(21);
    let initial = [
        (
            "conv.weight",
            Tensor::randn([8, 3, 3, 3], (Kind::Float, device)),
        ),
        ("bn.weight", Tensor::randn([8], (Kind::Float, device))),
        ("fc.weight", Tensor::randn([5, 8], (Kind::Float, device))),
        ("fc.bias", Tensor::zeros([5], (Kind::Float, device))),
        (
            "unused.weight",
            Tensor::randn([2, 2], (Kind::Float, device)),
        ),
    ];
    // No gradient for the last parameter (`set_gradients` zips the shorter list).
    let grads: Vec<Vec<Tensor>> = (0..4)
        .map(|_| {
            initial[..4]
                .iter()
                .map(|(_, t)| t.randn_like() * 0.1)
                .collect()
        })
        .collect();
    let params = parameters(&initial);
    let mut optimizer = Optimizer::with_settings(kind, momentum, weight_decay, handles(&params));
    let multi_tensor = !matches!(path, Path::PerParameter);
    optimizer.set_multi_tensor(multi_tensor);
    optimizer.set_fused(matches!(path, Path::Fused));
    assert_eq!(optimizer.multi_tensor(), multi_tensor);
    let mut seen = Vec::new();
    for (step, step_grads) in grads.iter().enumerate() {
        set_gradients(&mut optimizer, &params, step_grads);
        optimizer.step(0.05 * (step + 1) as f64);
        let mut snapshot: Vec<(String, Tensor)> = params
            .iter()
            .map(|(name, tensor)| (name.clone(), tensor.detach().copy()))
            .collect();
        snapshot.extend(optimizer.state());
        seen.push(snapshot);
    }
    seen
}

#[test]
fn the_multi_tensor_and_fused_steps_equal_the_per_parameter_step() {
    let kinds = [
        OptimKind::Sgd,
        OptimKind::Lars {
            trust: 0.02,
            clip: false,
        },
        OptimKind::Lars {
            trust: 0.001,
            clip: true,
        },
    ];
    for kind in kinds {
        for (momentum, weight_decay) in [(0.9, 5e-4), (0.0, 1e-2), (0.9, 0.0)] {
            let per_parameter = trajectory(kind, momentum, weight_decay, Path::PerParameter);
            for path in [Path::Foreach, Path::Fused] {
                let other = trajectory(kind, momentum, weight_decay, path);
                assert_eq!(other.len(), per_parameter.len());
                for (step, (a, b)) in other.iter().zip(&per_parameter).enumerate() {
                    let names_a: Vec<&String> = a.iter().map(|(name, _)| name).collect();
                    let names_b: Vec<&String> = b.iter().map(|(name, _)| name).collect();
                    assert_eq!(names_a, names_b, "{kind:?} {path:?} step {step}: buffers");
                    for ((name, x), (_, y)) in a.iter().zip(b) {
                        // The fused kernel contracts w·p + g and μ·buf + d into fused
                        // multiply-adds (one rounding instead of two): SGD's fused path agrees
                        // to a few units in the last place; the others bit for bit.
                        let fused_sgd = matches!(path, Path::Fused) && kind == OptimKind::Sgd;
                        let agrees = if fused_sgd {
                            x.allclose(y, 1e-6, 1e-7, false)
                        } else {
                            x.equal(y)
                        };
                        assert!(
                            agrees,
                            "{kind:?} {path:?} μ {momentum} wd {weight_decay} step {step}: \
                             {name} differs by {}",
                            (x - y).abs().max().double_value(&[])
                        );
                    }
                }
            }
        }
    }
}
