//! The recipe rules that make fa train the way the paper's authors trained, each checked
//! against an independent float64 computation written from the formula (the peer-library
//! checks of SGD and LARS are in `trainkit_optim.rs`): what `combine free` changes against
//! `mean` under each optimiser, the direction of NNCLR's InfoNCE, the readings of the
//! Gaussian mixup noise, and the learning-rate basis.

use fa_lang::driver::compile_source;
use fa_lang::ir::{LrBasis, LrScaling, OptimKind};
use fa_torch::lower::loss::info_nce;
use fa_torch::optim::Optimizer;
use tch::{Kind, Tensor};

// ---------------------------------------------------------------------------------------
// `free` against `mean` under LARS and SGD.
// ---------------------------------------------------------------------------------------

/// One optimiser step from `weight` (2-D) and `bias` (1-D) with their gradients multiplied
/// by `scale` (the loss of `free` is T times the loss of `mean`); returns the two updates.
fn updates(kind: OptimKind, scale: f64, lr: f64, wd: f64) -> (Vec<f64>, Vec<f64>) {
    let weight = Tensor::from_slice(&[0.3f64, -0.2, 0.5, 0.1, -0.4, 0.25])
        .reshape([2, 3])
        .set_requires_grad(true);
    let bias = Tensor::from_slice(&[0.05f64, -0.1]).set_requires_grad(true);
    let grad_weight = Tensor::from_slice(&[0.02f64, 0.01, -0.03, 0.04, 0.0, -0.01]).reshape([2, 3]);
    let grad_bias = Tensor::from_slice(&[0.01f64, -0.02]);
    let before = (weight.copy(), bias.copy());
    let mut optimizer = Optimizer::with_settings(
        kind,
        0.9,
        wd,
        vec![
            ("w".into(), weight.shallow_clone()),
            ("b".into(), bias.shallow_clone()),
        ],
    );
    optimizer.zero_grad();
    let loss = ((&weight * &grad_weight).sum(Kind::Double)
        + (&bias * &grad_bias).sum(Kind::Double))
        * scale;
    loss.backward();
    optimizer.step(lr);
    let delta = |after: &Tensor, before: &Tensor| {
        Vec::<f64>::try_from((after.detach() - before).reshape([-1])).unwrap()
    };
    (delta(&weight, &before.0), delta(&bias, &before.1))
}

/// The float64 LARS update of a 2-D parameter from the formula (first step, no momentum
/// history): `−lr · s · (g + wd·p)`, `s = trust‖p‖/(‖g‖ + wd‖p‖)`, clipped to
/// `min(s/lr, 1)`.
fn lars_reference(p: &[f64], g: &[f64], trust: f64, wd: f64, lr: f64, clip: bool) -> Vec<f64> {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (p_norm, g_norm) = (norm(p), norm(g));
    let mut s = trust * p_norm / (g_norm + wd * p_norm);
    if clip {
        s = (s / lr).min(1.0);
    }
    p.iter()
        .zip(g)
        .map(|(p, g)| -lr * s * (g + wd * p))
        .collect()
}

fn ratio(free: &[f64], mean: &[f64]) -> f64 {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    norm(free) / norm(mean)
}

const P: [f64; 6] = [0.3, -0.2, 0.5, 0.1, -0.4, 0.25];
const G: [f64; 6] = [0.02, 0.01, -0.03, 0.04, 0.0, -0.01];

/// Without LR clipping, LARS makes the update of every adapted (2-D) weight almost
/// independent of the loss scale: `free` (×T) changes it only through weight decay's share
/// of the trust ratio. The 1-D parameters (biases, norms) are not adapted and move T times
/// as far.
#[test]
fn under_lars_without_clipping_free_changes_only_biases_norms_and_the_decay_share() {
    // The NNCLR-like recipe's values: trust 0.02, weight decay 1e-5, 0.4 per 256 at 4096.
    let (trust, wd, lr) = (0.02, 1e-5, 6.4);
    let kind = OptimKind::Lars { trust, clip: false };
    for t in [2.0, 5.0] {
        let (w1, b1) = updates(kind, 1.0, lr, wd);
        let (wt, bt) = updates(kind, t, lr, wd);
        // Float64 references for both scales.
        let g_scaled: Vec<f64> = G.iter().map(|g| g * t).collect();
        let reference_1 = lars_reference(&P, &G, trust, wd, lr, false);
        let reference_t = lars_reference(&P, &g_scaled, trust, wd, lr, false);
        for (actual, expected) in w1
            .iter()
            .zip(&reference_1)
            .chain(wt.iter().zip(&reference_t))
        {
            assert!((actual - expected).abs() < 1e-12, "{actual} vs {expected}");
        }
        let weight_ratio = ratio(&wt, &w1);
        // A larger gradient shrinks weight decay's share of the trust ratio's denominator,
        // so the step grows, but by less than 0.1% here.
        assert!(
            weight_ratio > 1.0 && weight_ratio < 1.001,
            "T={t}: weight update ×{weight_ratio}"
        );
        assert!(
            (ratio(&bt, &b1) - t).abs() < 1e-12,
            "T={t}: biases move T times as far"
        );
    }
    // Without weight decay the adapted weights' update does not depend on T at all.
    let (w1, _) = updates(kind, 1.0, lr, 0.0);
    let (w5, _) = updates(kind, 5.0, lr, 0.0);
    assert!((ratio(&w5, &w1) - 1.0).abs() < 1e-12);
}

/// With LARC's clipping (solo-learn's `clip_lr`), a clipped weight takes the scheduled rate
/// on its raw gradient: its update is T times larger under `free` as long as the clip binds.
#[test]
fn under_lars_with_clipping_free_scales_the_clipped_weights() {
    let (trust, wd, lr) = (0.02, 1e-5, 0.05);
    let kind = OptimKind::Lars { trust, clip: true };
    let (w1, b1) = updates(kind, 1.0, lr, wd);
    let (w2, b2) = updates(kind, 2.0, lr, wd);
    // At T = 1 the local rate trust‖p‖/‖g‖ ≈ 0.19 exceeds lr = 0.05: the clip binds at both
    // scales (≈ 0.095 at T = 2), so the update is lr·(g + wd·p), nearly doubled.
    let g2: Vec<f64> = G.iter().map(|g| g * 2.0).collect();
    for (actual, expected) in w1.iter().zip(lars_reference(&P, &G, trust, wd, lr, true)) {
        assert!((actual - expected).abs() < 1e-12);
    }
    for (actual, expected) in w2.iter().zip(lars_reference(&P, &g2, trust, wd, lr, true)) {
        assert!((actual - expected).abs() < 1e-12);
    }
    assert!((ratio(&w2, &w1) - 2.0).abs() < 1e-3, "{}", ratio(&w2, &w1));
    assert!((ratio(&b2, &b1) - 2.0).abs() < 1e-12);
}

/// Under SGD, `free` is a T-times larger step for every parameter.
#[test]
fn under_sgd_free_scales_every_update() {
    let (w1, b1) = updates(OptimKind::Sgd, 1.0, 0.1, 0.0);
    let (w4, b4) = updates(OptimKind::Sgd, 4.0, 0.1, 0.0);
    assert!((ratio(&w4, &w1) - 4.0).abs() < 1e-12);
    assert!((ratio(&b4, &b1) - 4.0).abs() < 1e-12);
}

// ---------------------------------------------------------------------------------------
// NNCLR's InfoNCE direction.
// ---------------------------------------------------------------------------------------

/// solo-learn's `nnclr_loss_func(nn, p, τ)` from its formula in float64: rows are the
/// neighbours, the softmax of row i runs over every prediction, the positive is prediction i.
fn nnclr_reference(nn: &[[f64; 3]], p: &[[f64; 3]], tau: f64) -> f64 {
    let unit = |v: &[f64; 3]| {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.map(|x| x / n)
    };
    let (nn, p): (Vec<_>, Vec<_>) = (nn.iter().map(unit).collect(), p.iter().map(unit).collect());
    let mut total = 0.0;
    for (i, row) in nn.iter().enumerate() {
        let logits: Vec<f64> = p
            .iter()
            .map(|column| row.iter().zip(column).map(|(a, b)| a * b).sum::<f64>() / tau)
            .collect();
        let log_sum = logits.iter().map(|l| l.exp()).sum::<f64>().ln();
        total += log_sum - logits[i];
    }
    total / nn.len() as f64
}

#[test]
fn nnclr_negatives_are_the_other_predictions() {
    let p = [
        [1.0, 0.2, -0.3],
        [0.1, 0.9, 0.4],
        [-0.5, 0.3, 0.8],
        [0.3, -0.7, 0.2],
    ];
    let nn = [
        [0.9, 0.1, -0.2],
        [0.3, 1.0, 0.1],
        [-0.2, 0.1, 0.9],
        [0.6, -0.4, 0.5],
    ];
    let tensor = |rows: &[[f64; 3]]| Tensor::from_slice(rows.concat().as_slice()).reshape([4, 3]);
    let expected = nnclr_reference(&nn, &p, 0.1);
    // `anchor ~ neighbour` with `negatives: anchors` computes info_nce(neighbour, anchor).
    let got = info_nce(&tensor(&nn), &tensor(&p), 0.1).double_value(&[]);
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    // The default direction (softmax over neighbours) is a different number here.
    let other = info_nce(&tensor(&p), &tensor(&nn), 0.1).double_value(&[]);
    assert!((other - expected).abs() > 1e-3, "{other} vs {expected}");
}

/// A small NNCLR-like model: `negatives: anchors` on `anchor ~ neighbour` is the term
/// written the other way round with the default negatives.
const NNCLR_LIKE: &str = r#"
model nnclr_like
data { format: idx, path: "x", image_size: 8, channels: 1, batch: 4 }
pipeline plain = [normalize(mean: 0.5, std: 0.5)]
encoder f = convnet(4)
projector g = mlp(8, 8)
predictor q = mlp(8, 8)
anchor = view(plain) -> f -> g -> q
neighbour = view(plain) -> f -> g -> stopgrad
loss infonce(tau: 0.2, negatives: NEGATIVES) { TERM }
"#;

fn nnclr_like_loss(negatives: &str, term: &str) -> f64 {
    let source = NNCLR_LIKE
        .replace("NEGATIVES", negatives)
        .replace("TERM", term);
    let compiled = compile_source("nnclr_like.fa", &source, &[])
        .unwrap_or_else(|report| panic!("{}", fa_lang::diag::render(&report, 100, false)));
    let valid = &compiled.cells[0].1;
    tch::manual_seed(1);
    let store = tch::nn::VarStore::new(tch::Device::Cpu);
    let mut network = fa_torch::lower::Network::new(&store.root(), valid).unwrap();
    tch::manual_seed(2);
    let views = [
        Tensor::rand([4, 1, 8, 8], (Kind::Float, tch::Device::Cpu)),
        Tensor::rand([4, 1, 8, 8], (Kind::Float, tch::Device::Cpu)),
    ];
    let indices = Tensor::arange(4, (Kind::Int64, tch::Device::Cpu));
    network
        .forward(&views, &indices, false)
        .total
        .double_value(&[])
}

#[test]
fn negatives_anchors_is_the_term_the_other_way_round() {
    let anchors = nnclr_like_loss("anchors", "anchor ~ neighbour");
    let swapped = nnclr_like_loss("positives", "neighbour ~ anchor");
    let default = nnclr_like_loss("positives", "anchor ~ neighbour");
    assert!((anchors - swapped).abs() < 1e-6, "{anchors} vs {swapped}");
    assert!(
        (anchors - default).abs() > 1e-6,
        "the direction must matter here"
    );
}

// ---------------------------------------------------------------------------------------
// The Gaussian noise readings and the learning-rate basis.
// ---------------------------------------------------------------------------------------

fn compile_one(source: &str) -> fa_lang::valid::ValidModel {
    compile_source("m.fa", source, &[])
        .unwrap_or_else(|report| panic!("{}", fa_lang::diag::render(&report, 100, false)))
        .cells
        .remove(0)
        .1
}

fn with_noise(noise: &str) -> String {
    NNCLR_LIKE
        .replace("negatives: NEGATIVES", "negatives: positives")
        .replace(
            "neighbour = view(plain) -> f -> g -> stopgrad",
            &format!("neighbour = view(plain) -> f -> g -> stopgrad\nmixed = neighbour -> fa mixup(alpha: 0.85, noise: {noise})"),
        )
        .replace("TERM", "anchor ~ neighbour, anchor ~ mixed")
}

#[test]
fn gaussian_noise_readings_are_expressible() {
    let plan = |noise: &str| fa_lang::plan::plan(&compile_one(&with_noise(noise))).to_string();
    assert!(plan("gaussian(sigma: 0.2)").contains("gaussian noise sigma=0.2"));
    // N(0, 0.2) read as a variance is σ = √0.2.
    let variance = plan("gaussian(variance: 0.2)");
    assert!(
        variance.contains(&format!("sigma={}", 0.2f64.sqrt())),
        "{variance}"
    );
    assert!(plan("gaussian(sigma: 0.2, space: raw)").contains("on raw features"));
}

#[test]
fn learning_rate_basis_counts_the_accumulation_or_not() {
    let source = |basis: &str| {
        format!(
            "{}\noptim {{ lr: 0.4 per 256, accumulate: 8{basis} }}",
            NNCLR_LIKE
                .replace("NEGATIVES", "positives")
                .replace("TERM", "anchor ~ neighbour")
                .replace("batch: 4", "batch: 512")
        )
    };
    let effective = compile_one(&source("")).model().optim.lr;
    assert_eq!(effective.scaling, LrScaling::Per256);
    assert_eq!(effective.basis, LrBasis::Effective);
    // solo-learn's rule: 0.4 × 512 × 8 / 256.
    assert!((effective.resolve(512, 8) - 6.4).abs() < 1e-12);
    assert!(effective
        .derivation(512, 8)
        .starts_with("6.4 = 0.4 × 4096 / 256"));
    let batch = compile_one(&source(", lr_basis: batch")).model().optim.lr;
    assert_eq!(batch.basis, LrBasis::Batch);
    assert!((batch.resolve(512, 8) - 0.8).abs() < 1e-12);
}

/// Mean cos(FA(z), z) of Gaussian mixup (α = 0.85, d = 256), by a float64 Monte Carlo written
/// from the definition, against fa's operators: the figures of the readings' table in
/// docs/feature-augmentation.md.
#[test]
fn gaussian_readings_perturb_the_feature_as_documented() {
    use fa_base::random::{Key, Purpose};
    let (rows, width, alpha) = (2000usize, 256usize, 0.85);
    let reference = |sigma: f64, norm: f64| {
        let mut stream = Key::new(9, Purpose::Network, 0).stream(0);
        let mut total = 0.0;
        for _ in 0..rows {
            let z: Vec<f64> = (0..width).map(|_| stream.normal()).collect();
            let length = z.iter().map(|x| x * x).sum::<f64>().sqrt();
            let z: Vec<f64> = z.iter().map(|x| x / length * norm).collect();
            let lambda = stream.uniform(alpha, 1.0);
            let mixed: Vec<f64> = z
                .iter()
                .map(|x| lambda * x + (1.0 - lambda) * sigma * stream.normal())
                .collect();
            let dot: f64 = mixed.iter().zip(&z).map(|(a, b)| a * b).sum();
            let mixed_norm = mixed.iter().map(|x| x * x).sum::<f64>().sqrt();
            total += dot / (mixed_norm * norm);
        }
        total / rows as f64
    };
    let measured = |sigma: f64, norm: f64| {
        tch::manual_seed(4);
        let z = fa_torch::lower::fa::l2_normalize(&Tensor::randn(
            [rows as i64, width as i64],
            (Kind::Float, tch::Device::Cpu),
        )) * norm;
        let lambda = fa_torch::lower::fa::draw_lambda(rows, alpha, tch::Device::Cpu);
        let mixed =
            fa_torch::lower::fa::mixup(&z, &fa_torch::lower::fa::draw_gaussian(&z, sigma), &lambda);
        let cos = (fa_torch::lower::fa::l2_normalize(&mixed)
            * fa_torch::lower::fa::l2_normalize(&z))
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        cos.mean(Kind::Float).double_value(&[])
    };
    for (sigma, norm, documented) in [
        (0.2, 1.0, 0.958),
        (0.2f64.sqrt(), 1.0, 0.849),
        (0.2, 16.0, 1.0),
    ] {
        let (expected, got) = (reference(sigma, norm), measured(sigma, norm));
        assert!(
            (expected - documented).abs() < 0.005,
            "σ {sigma}, ‖z‖ {norm}: reference {expected}"
        );
        assert!(
            (got - expected).abs() < 0.005,
            "σ {sigma}, ‖z‖ {norm}: {got} vs {expected}"
        );
    }
}
