//! Value ranges on the resolved model. The resolver checks every value as it reads the
//! source; a model read back from a run folder's `model.json` skips the resolver, so
//! validation checks the same ranges again on the IR (a hand-edited `batch: 0` or `tau: -1`
//! is an error here, not a division by zero in the trainer).

use super::{error, Problem};
use crate::ir::*;
use crate::resolve::params::{Range, CAPS};

/// Collects out-of-range values as `fa::valid::range` errors at the span of their block.
struct Checker<'a> {
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn real(&mut self, span: Span, name: &str, value: f64, range: Range) {
        if !range.contains(value) {
            self.problems.push(
                error(
                    "fa::valid::range",
                    span,
                    format!("`{name}` must be {}, found {value}", range.text()),
                    "a value here is out of range",
                )
                .with_help(STORED_HELP),
            );
        }
    }

    /// An integer at least `min` and at most its cap in [`CAPS`] under `cap_name`.
    fn count(&mut self, span: Span, name: &str, cap_name: &str, value: usize, min: usize) {
        let max = CAPS
            .iter()
            .find(|(cap, _, _)| *cap == cap_name)
            .map_or(f64::INFINITY, |&(_, max, _)| max as f64);
        self.real(span, name, value as f64, Range::closed(min as f64, max));
    }
}

const STORED_HELP: &str = "a `.fa` source with this value is refused by the resolver; a stored `model.json` was probably edited by hand: train from the source instead";

const BELOW_ONE: Range = Range {
    min: 0.0,
    min_inclusive: true,
    max: 1.0,
    max_inclusive: false,
};

/// Checks every numeric value of `model` against the range the resolver enforces.
pub(super) fn check(model: &Model, problems: &mut Vec<Problem>) {
    let mut c = Checker { problems };
    let data = &model.data;
    c.count(data.span, "image_size", "image_size", data.image_size, 8);
    if data.channels != 1 && data.channels != 3 {
        c.real(
            data.span,
            "channels",
            data.channels as f64,
            Range::closed(1.0, 1.0),
        );
    }
    c.count(data.span, "batch", "batch", data.batch_size, 1);
    if let Some(limit) = data.limit {
        c.count(data.span, "limit", "limit", limit, 1);
    }

    let effective = data.batch_size.saturating_mul(model.optim.accumulate);
    if let Some(images) = super::dataset_size(model).filter(|&images| images < effective) {
        c.problems.push(
            error(
                "fa::valid::dataset_too_small",
                data.span,
                format!("the dataset has {images} training images, fewer than one effective batch of {effective}"),
                format!("{images} images"),
            )
            .with_help("an epoch would have no step: raise `limit`, or lower `batch` (or `optim.accumulate`)"),
        );
    }

    let optim = &model.optim;
    c.real(optim.span, "lr", optim.lr.value, Range::POSITIVE);
    c.real(optim.span, "momentum", optim.momentum, BELOW_ONE);
    c.real(
        optim.span,
        "weight_decay",
        optim.weight_decay,
        Range::NON_NEGATIVE,
    );
    c.real(
        optim.span,
        "warmup",
        optim.warmup_epochs,
        Range::NON_NEGATIVE,
    );
    c.count(optim.span, "accumulate", "accumulate", optim.accumulate, 1);
    if let Some(clip) = optim.clip_grad_norm {
        c.real(optim.span, "clip_grad_norm", clip, Range::POSITIVE);
    }
    if let OptimKind::Lars { trust, .. } = optim.kind {
        c.real(optim.span, "trust", trust, Range::POSITIVE);
    }

    let train = &model.train;
    c.count(train.span, "epochs", "epochs", train.epochs, 1);
    c.count(
        train.span,
        "checkpoint_every",
        "checkpoint_every",
        train.checkpoint_every,
        1,
    );
    c.count(
        train.span,
        "keep_checkpoints",
        "keep_checkpoints",
        train.keep_checkpoints,
        1,
    );

    if let Some(knn) = &model.eval.knn {
        c.count(knn.span, "k", "k", knn.k, 1);
        c.real(knn.span, "tau", knn.temperature, Range::POSITIVE);
    }
    if let Some(linear) = &model.eval.linear {
        c.count(linear.span, "epochs", "epochs", linear.epochs, 1);
        c.real(linear.span, "lr", linear.lr, Range::POSITIVE);
        c.count(linear.span, "batch", "batch", linear.batch_size, 1);
        c.real(linear.span, "momentum", linear.momentum, BELOW_ONE);
        c.real(
            linear.span,
            "weight_decay",
            linear.weight_decay,
            Range::NON_NEGATIVE,
        );
    }

    for def in model.modules.values() {
        match &def.kind {
            ModuleKind::ConvNet { widths } | ModuleKind::Mlp { widths, .. } => {
                if widths.is_empty() {
                    c.real(def.span, "widths", 0.0, Range::closed(1.0, f64::INFINITY));
                }
                for &width in widths {
                    c.count(def.span, "width", "width", width, 1);
                }
            }
            ModuleKind::Ema {
                base_momentum,
                final_momentum,
                ..
            } => {
                c.real(
                    def.span,
                    "momentum",
                    *base_momentum,
                    Range::closed(0.0, 1.0),
                );
                c.real(
                    def.span,
                    "final",
                    *final_momentum,
                    Range::closed(*base_momentum, 1.0),
                );
            }
            ModuleKind::ResNet { .. } => {}
        }
    }

    for pipeline in model.pipelines.values() {
        for op in &pipeline.ops {
            aug_op(&mut c, pipeline.span, op);
        }
    }

    let mut reported_batch = false;
    for node in model.graph.node_weights() {
        match &node.kind {
            NodeKind::FeatureAug(fa) => feature_aug(&mut c, node.span, fa),
            NodeKind::Loss(term) => {
                if let LossKind::InfoNce { tau, .. } = term.kind {
                    c.real(node.span, "tau", tau, Range::POSITIVE);
                    if model.data.batch_size == 1 && !reported_batch {
                        reported_batch = true;
                        c.problems.push(
                            error(
                                "fa::valid::batch_too_small",
                                model.data.span,
                                "InfoNCE needs at least 2 images per batch, but `batch` is 1",
                                "batch 1",
                            )
                            .with_related(node.span, "an InfoNCE term")
                            .with_help("the other images of the batch are the negatives: with one image the loss is 0 and nothing is learned; raise `data.batch`"),
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

fn aug_op(c: &mut Checker, span: Span, op: &AugOp) {
    let p = Range::PROBABILITY;
    match op {
        AugOp::RandomResizedCrop {
            size, scale, ratio, ..
        } => {
            c.count(span, "size", "size", *size, 1);
            c.real(span, "scale", scale.0, Range::closed(0.0, 1.0));
            c.real(span, "scale", scale.1, Range::closed(scale.0.max(0.0), 1.0));
            c.real(span, "ratio", ratio.0, Range::POSITIVE);
            c.real(
                span,
                "ratio",
                ratio.1,
                Range::closed(ratio.0, f64::INFINITY),
            );
        }
        AugOp::HorizontalFlip { p: prob } | AugOp::Grayscale { p: prob } => {
            c.real(span, "p", *prob, p)
        }
        AugOp::ColorJitter {
            brightness,
            contrast,
            saturation,
            hue,
            p: prob,
        } => {
            c.real(span, "brightness", *brightness, Range::NON_NEGATIVE);
            c.real(span, "contrast", *contrast, Range::NON_NEGATIVE);
            c.real(span, "saturation", *saturation, Range::NON_NEGATIVE);
            c.real(span, "hue", *hue, Range::closed(0.0, 0.5));
            c.real(span, "p", *prob, p);
        }
        AugOp::GaussianBlur { p: prob, sigma } => {
            c.real(span, "p", *prob, p);
            c.real(span, "sigma", sigma.0, Range::POSITIVE);
            c.real(
                span,
                "sigma",
                sigma.1,
                Range::closed(sigma.0, f64::INFINITY),
            );
        }
        AugOp::Solarize { p: prob, threshold } => {
            c.real(span, "p", *prob, p);
            c.real(span, "threshold", *threshold, p);
        }
        AugOp::Normalize { mean, std } => {
            for &m in mean {
                c.real(span, "mean", m, Range::ANY);
            }
            for &s in std {
                c.real(span, "std", s, Range::POSITIVE);
            }
        }
    }
}

fn feature_aug(c: &mut Checker, span: Span, fa: &FeatureAug) {
    c.count(span, "k", "k", fa.k, 1);
    let bank = |c: &mut Checker, bank: &BankConfig| c.count(span, "bank", "bank", bank.size, 1);
    match &fa.method {
        FaMethod::None => {}
        FaMethod::Nn(config) => bank(c, config),
        FaMethod::Mask { rate } => c.real(span, "rate", *rate, BELOW_ONE),
        FaMethod::Mixup { alpha, noise } => {
            c.real(
                span,
                "alpha",
                *alpha,
                Range {
                    min: 0.0,
                    min_inclusive: false,
                    max: 1.0,
                    max_inclusive: true,
                },
            );
            match noise {
                MixupNoise::Nn(config) => bank(c, config),
                MixupNoise::Batch => {}
                MixupNoise::Gaussian { sigma, .. } => {
                    c.real(span, "sigma", *sigma, Range::POSITIVE)
                }
            }
        }
    }
}
