//! The tch network: VarStore against the plan, forward and backward of every architecture,
//! combining, gradient flow and the EMA update.

mod support;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use fa_lang::ir::{BankConfig, FaMethod, NnGrad};
use fa_lang::plan::{plan, ParamKind};
use fa_lang::testing::{architecture, every_fa_method, nn, Architecture, Widths};
use fa_lang::valid::ValidModel;
use fa_torch::lower::Network;
use fa_torch::schedule::ema_momentum;
use support::models::{fixture, fixture_cells};
use tch::{nn as tnn, Device, Kind, Tensor};

/// libtorch's random generator is global: tests that seed it, or draw from it, run one at a
/// time so that equal seeds give equal draws.
static GENERATOR: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn views(valid: &ValidModel, rows: i64) -> Vec<Tensor> {
    let data = &valid.model().data;
    let shape = [
        rows,
        data.channels as i64,
        data.image_size as i64,
        data.image_size as i64,
    ];
    valid
        .views()
        .iter()
        .map(|_| Tensor::randn(shape, (Kind::Float, Device::Cpu)))
        .collect()
}

fn indices(rows: i64) -> Tensor {
    Tensor::arange(rows, (Kind::Int64, Device::Cpu))
}

fn grads_by_name(store: &tnn::VarStore) -> HashMap<String, Option<Tensor>> {
    store
        .variables()
        .into_iter()
        .map(|(name, tensor)| {
            let grad = tensor.grad();
            (name, grad.defined().then_some(grad))
        })
        .collect()
}

fn has_nonzero_grad(grads: &HashMap<String, Option<Tensor>>, prefix: &str) -> bool {
    grads
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .any(|(_, grad)| {
            grad.as_ref()
                .is_some_and(|g| g.abs().sum(Kind::Float).double_value(&[]) > 0.0)
        })
}

fn step(valid: &ValidModel, rows: i64) -> (tnn::VarStore, Network, fa_torch::lower::StepOutput) {
    tch::manual_seed(0);
    let store = tnn::VarStore::new(Device::Cpu);
    let mut network = Network::new(&store.root(), valid).expect("lowering succeeds");
    let output = network.forward(&views(valid, rows), &indices(rows), true);
    (store, network, output)
}

#[test]
fn varstore_equals_plan_for_resnet18_cifar() {
    let _serial = serial();
    let valid = architecture(
        Architecture::ParallelPredictor,
        &Widths::resnet18_cifar(),
        Some((nn(1024), 1)),
    );
    let store = tnn::VarStore::new(Device::Cpu);
    let _network = Network::new(&store.root(), &valid).unwrap();
    let plan = plan(&valid);
    let mut from_store: Vec<(String, Vec<usize>)> = store
        .variables()
        .into_iter()
        .map(|(name, tensor)| (name, tensor.size().iter().map(|&d| d as usize).collect()))
        .collect();
    from_store.sort();
    let mut from_plan: Vec<(String, Vec<usize>)> = plan
        .params
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    from_plan.sort();
    assert_eq!(from_store, from_plan);

    let trainable: i64 = store
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum();
    assert_eq!(trainable as usize, plan.trainable);
    let encoder: usize = plan
        .params
        .iter()
        .filter(|p| p.kind == ParamKind::Trainable && p.name.starts_with("f."))
        .map(|p| p.numel())
        .sum();
    assert_eq!(encoder, 11_168_832);
}

#[test]
fn resnet_trainable_counts_in_the_varstore() {
    let _serial = serial();
    let expected_counts = [
        ("resnet_counts[resnet=resnet18_imagenet]", 11_176_512),
        ("resnet_counts[resnet=resnet50_cifar]", 23_500_352),
        ("resnet_counts[resnet=resnet50_imagenet]", 23_508_032),
    ];
    let cells = fixture_cells("resnet_counts.fa");
    let names: Vec<&str> = cells.iter().map(|(name, _)| name.as_str()).collect();
    let expected_names: Vec<&str> = expected_counts.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected_names);
    for ((name, valid), (_, expected)) in cells.iter().zip(expected_counts) {
        let store = tnn::VarStore::new(Device::Cpu);
        let _network = Network::new(&store.root(), valid).unwrap();
        let variables = store.variables();
        let trainable: usize = variables
            .iter()
            .filter(|(name, tensor)| name.starts_with("f.") && tensor.requires_grad())
            .map(|(_, tensor)| tensor.numel())
            .sum();
        assert_eq!(trainable, expected, "{name}");
        assert!(!variables["f.bn1.running_mean"].requires_grad());
    }
}

#[test]
fn every_architecture_and_method_steps_with_finite_loss() {
    let _serial = serial();
    let widths = Widths::tiny();
    for arch in [
        Architecture::Basic,
        Architecture::ParallelPredictor,
        Architecture::PostPredictor,
        Architecture::PrePredictor,
        Architecture::Byol,
    ] {
        let mut cases: Vec<(String, Option<(FaMethod, usize)>)> = vec![("none".into(), None)];
        for (name, method) in every_fa_method(64) {
            cases.push((format!("{name} k=1"), Some((method.clone(), 1))));
            cases.push((format!("{name} k=4"), Some((method, 4))));
        }
        for (label, fa) in cases {
            let k = fa.as_ref().map_or(0, |(_, k)| *k);
            let valid = architecture(arch, &widths, fa);
            let (store, mut network, output) = step(&valid, 6);
            let total = output.total.double_value(&[]);
            assert!(total.is_finite(), "{arch:?} {label}: {total}");
            assert_eq!(output.terms.len(), valid.term_count(), "{arch:?} {label}");
            assert_eq!(output.terms.len(), 1 + k);
            output.total.backward();
            let grads = grads_by_name(&store);
            assert!(
                has_nonzero_grad(&grads, "f."),
                "{arch:?} {label}: encoder got no gradient"
            );
            // A second step exercises a bank that now holds real features.
            let again = network.forward(&views(&valid, 6), &indices(6), true);
            assert!(again.total.double_value(&[]).is_finite());
            if arch == Architecture::Byol {
                assert!(network.update_targets(0.5).is_some());
            }
        }
    }
}

#[test]
fn free_is_term_count_times_mean() {
    let _serial = serial();
    let (_, method) = every_fa_method(64)
        .into_iter()
        .find(|(n, _)| *n == "mask")
        .unwrap();
    let mean = architecture(
        Architecture::ParallelPredictor,
        &Widths::tiny(),
        Some((method, 4)),
    );
    let mut model = mean.model().clone();
    model.combine = fa_lang::ir::Combine::Free;
    let free = fa_lang::valid::validate(model).unwrap();
    // Same seed, same parameters, same draws: the two totals differ only by the combining.
    let (_, _, mean_output) = step(&mean, 5);
    let (_, _, free_output) = step(&free, 5);
    let terms = mean.term_count() as f64;
    assert_eq!(terms, 5.0);
    let mean_total = mean_output.total.double_value(&[]);
    let free_total = free_output.total.double_value(&[]);
    assert!(
        (free_total - terms * mean_total).abs() < 1e-4 * free_total.abs(),
        "{free_total} vs {terms}×{mean_total}"
    );
    let sum: f64 = free_output
        .terms
        .iter()
        .map(|(_, v)| v.double_value(&[]))
        .sum();
    assert!((sum - free_total).abs() < 1e-5 * sum.abs());
}

#[test]
fn term_names_carry_fa_sample_numbers() {
    let _serial = serial();
    let (_, method) = every_fa_method(64)
        .into_iter()
        .find(|(n, _)| *n == "gaussian-noise")
        .unwrap();
    let valid = architecture(
        Architecture::ParallelPredictor,
        &Widths::tiny(),
        Some((method, 2)),
    );
    let (_, _, output) = step(&valid, 4);
    let names: Vec<&str> = output.terms.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "prediction~positive",
            "prediction~augmented#1",
            "prediction~augmented#2"
        ]
    );
}

#[test]
fn stopgrad_blocks_the_positive_branch() {
    let _serial = serial();
    // Only the positive branch feeds the projector `g2`; behind a stop-gradient it gets none.
    let valid = fixture("stopgrad_branch.fa");
    let (store, _, output) = step(&valid, 4);
    output.total.backward();
    let grads = grads_by_name(&store);
    assert!(has_nonzero_grad(&grads, "g."));
    assert!(!has_nonzero_grad(&grads, "g2."));
}

#[test]
fn post_predictor_nn_term_is_gradient_free() {
    let _serial = serial();
    let valid = architecture(
        Architecture::PostPredictor,
        &Widths::tiny(),
        Some((nn(64), 1)),
    );
    let (_, _, output) = step(&valid, 4);
    let term = |wanted: &str| {
        output
            .terms
            .iter()
            .find(|(name, _)| name == wanted)
            .unwrap()
            .1
            .shallow_clone()
    };
    assert!(
        !term("augmented~positive").requires_grad(),
        "the neighbour is a constant and the positive is detached"
    );
    assert!(term("prediction~positive").requires_grad());
}

#[test]
fn straight_through_nn_passes_gradient() {
    let _serial = serial();
    let method = FaMethod::Nn(BankConfig {
        size: 64,
        grad: NnGrad::StraightThrough,
        exclude_self: true,
    });
    let valid = architecture(
        Architecture::PostPredictor,
        &Widths::tiny(),
        Some((method, 1)),
    );
    let (_, _, output) = step(&valid, 4);
    assert!(output.terms.iter().all(|(_, value)| value.requires_grad()));
}

#[test]
fn ema_never_gets_gradients_and_follows_the_momentum_schedule() {
    let _serial = serial();
    let valid = architecture(Architecture::Byol, &Widths::tiny(), Some((nn(64), 1)));
    let (store, mut network, output) = step(&valid, 4);
    output.total.backward();
    let variables = store.variables();
    for (name, tensor) in &variables {
        if name.starts_with("ema.") || name.starts_with("bank.") {
            assert!(!tensor.requires_grad(), "{name}");
            assert!(!tensor.grad().defined(), "{name} got a gradient");
        }
    }
    // Move the online weights, then check one averaged parameter and one copied buffer.
    let online = variables["f.blocks.0.conv.weight"].shallow_clone();
    let target = variables["ema.target.f.blocks.0.conv.weight"].shallow_clone();
    tch::no_grad(|| {
        let _ = online.shallow_clone().g_add_scalar_(1.0);
    });
    let before = target.copy();
    let momentum = network.update_targets(0.25).unwrap();
    assert!((momentum - ema_momentum(0.99, 1.0, 0.25)).abs() < 1e-12);
    let expected = &before * momentum + online.detach() * (1.0 - momentum);
    assert!(target.allclose(&expected, 1e-6, 1e-6, false));
    let running = &variables["f.blocks.0.bn.running_mean"];
    assert!(variables["ema.target.f.blocks.0.bn.running_mean"].equal(running));

    assert!((ema_momentum(0.99, 1.0, 0.0) - 0.99).abs() < 1e-12);
    assert!((ema_momentum(0.99, 1.0, 1.0) - 1.0).abs() < 1e-12);
    assert!((ema_momentum(0.99, 1.0, 0.5) - 0.995).abs() < 1e-12);
}

#[test]
fn ema_starts_as_a_copy_of_the_online_chain() {
    let _serial = serial();
    let valid = architecture(Architecture::Byol, &Widths::tiny(), None);
    let store = tnn::VarStore::new(Device::Cpu);
    let _network = Network::new(&store.root(), &valid).unwrap();
    let variables = store.variables();
    let mut compared = 0;
    for (name, tensor) in &variables {
        if let Some(online) = name.strip_prefix("ema.target.") {
            assert!(tensor.equal(&variables[online]), "{name}");
            compared += 1;
        }
    }
    assert!(compared > 10);
}

/// `architecture` with every loss term symmetric and with every term one-way, and a network
/// of each with the same initial weights (the same seed).
#[allow(clippy::type_complexity)]
fn symmetric_and_one_way(
    architecture_kind: Architecture,
) -> (
    ValidModel,
    ValidModel,
    (tnn::VarStore, Network),
    (tnn::VarStore, Network),
) {
    let with_symmetry = |symmetric: bool| {
        let mut model = architecture(architecture_kind, &Widths::tiny(), None)
            .model()
            .clone();
        for node in model.graph.node_weights_mut() {
            if let fa_lang::ir::NodeKind::Loss(term) = &mut node.kind {
                term.symmetric = symmetric;
            }
        }
        fa_lang::valid::validate(model).unwrap()
    };
    let (valid, asymmetric) = (with_symmetry(true), with_symmetry(false));
    let network = |valid: &ValidModel| {
        tch::manual_seed(0);
        let store = tnn::VarStore::new(Device::Cpu);
        let network = Network::new(&store.root(), valid).unwrap();
        (store, network)
    };
    let (symmetric, one_way) = (network(&valid), network(&asymmetric));
    (valid, asymmetric, symmetric, one_way)
}

/// The total loss of `architecture` with every term symmetric, and of the same network
/// (same initial weights) with every term one-way, on the views and on the exchanged views.
fn symmetric_and_both_directions(architecture_kind: Architecture) -> (f64, f64, f64) {
    let (valid, _, (store, mut both_ways), (single_store, mut one_way)) =
        symmetric_and_one_way(architecture_kind);
    assert!(store.variables()["g.layers.0.linear.weight"]
        .equal(&single_store.variables()["g.layers.0.linear.weight"]));

    let inputs = views(&valid, 4);
    // Evaluation mode: batch norm uses running statistics, so each direction can be
    // recomputed on its own.
    let total = |network: &mut Network, inputs: &[Tensor]| {
        network
            .forward(inputs, &indices(4), false)
            .total
            .double_value(&[])
    };
    let both = total(&mut both_ways, &inputs);
    let forward = total(&mut one_way, &inputs);
    let swapped = [inputs[1].shallow_clone(), inputs[0].shallow_clone()];
    let backward = total(&mut one_way, &swapped);
    assert!(
        (forward - backward).abs() > 1e-6,
        "the two directions should differ"
    );
    (both, forward, backward)
}

#[test]
fn symmetric_byol_term_sums_both_directions() {
    let _serial = serial();
    let (both, forward, backward) = symmetric_and_both_directions(Architecture::Byol);
    assert!(
        (both - (forward + backward)).abs() < 1e-5,
        "{both} vs {forward} + {backward}"
    );
}

#[test]
fn symmetric_infonce_term_averages_both_directions() {
    let _serial = serial();
    let (both, forward, backward) = symmetric_and_both_directions(Architecture::Basic);
    assert!(
        (both - (forward + backward) / 2.0).abs() < 1e-5,
        "{both} vs ({forward} + {backward}) / 2"
    );
}

/// The swapped pass of a symmetric term reuses the first pass's module outputs, so each
/// module sees each view once: batch-norm running statistics move exactly as they do when
/// every view goes through the network once.
#[test]
fn symmetric_terms_update_batch_norm_statistics_once_per_view() {
    let _serial = serial();
    // Basic applies the encoder to both views already, so making its term symmetric must
    // not move the encoder's running statistics any further.
    let (valid, _, (store, mut symmetric), (one_way_store, mut one_way)) =
        symmetric_and_one_way(Architecture::Basic);
    let inputs = views(&valid, 4);
    let _ = symmetric.forward(&inputs, &indices(4), true);
    let _ = one_way.forward(&inputs, &indices(4), true);
    let statistics: Vec<String> = store
        .variables()
        .keys()
        .filter(|name| name.ends_with("running_mean"))
        .cloned()
        .collect();
    assert!(!statistics.is_empty(), "the test model has batch norm");
    let variables = (store.variables(), one_way_store.variables());
    for name in &statistics {
        assert!(
            variables.0[name].allclose(&variables.1[name], 1e-6, 1e-7, false),
            "{name}: running statistics moved more than once per view"
        );
    }
}

#[test]
fn resnet18_cifar_parallel_predictor_steps_at_real_widths() {
    let _serial = serial();
    let valid = architecture(
        Architecture::ParallelPredictor,
        &Widths::resnet18_cifar(),
        Some((nn(4096), 1)),
    );
    let (store, _, output) = step(&valid, 4);
    assert!(output.total.double_value(&[]).is_finite());
    output.total.backward();
    let grads = grads_by_name(&store);
    assert!(has_nonzero_grad(&grads, "f.layer4."));
    assert!(has_nonzero_grad(&grads, "q."));
    assert_eq!(output.projection.size(), [4, 256]);
    let (hits, queries) = output.nn_hits.unwrap();
    // The bank starts with random entries whose stored index is −1.
    assert_eq!(Vec::<i64>::try_from(&hits).unwrap(), vec![-1; 4]);
    assert!(queries.equal(&indices(4)));
}
