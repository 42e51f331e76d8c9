//! Feature-augmentation methods: `fa none`, `fa nn(...)`, `fa mask(...)`, `fa mixup(...)`
//! with their banks and noises.

use crate::diag::Diagnostic;
use crate::ir::*;
use crate::resolve::params::{callee, quote_list, unknown_name, Params, Range};
use crate::resolve::vocabulary::{FA_METHODS, MIXUP_NOISES};
use crate::syntax::ast::Expr;

/// A feature-augmentation method: `None` on error, `Some(None)` for `fa none`.
pub(super) fn fa_method(expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Option<FeatureAug>> {
    let (name, args, span) = callee(
        expr,
        "a feature augmentation (`none`, `nn`, `mask`, `mixup`)",
        diags,
    )?;
    let method = match name {
        "none" => {
            Params::of_call("`none`", span, args, FA_METHODS.params("none"), diags).finish(diags);
            return Some(None);
        }
        "nn" => {
            let mut p = Params::of_call("`nn`", span, args, FA_METHODS.params("nn"), diags);
            let bank = bank(&mut p, diags);
            let k = p.usize("k", 1, 1, diags);
            p.finish(diags);
            return Some(Some(FeatureAug {
                method: FaMethod::Nn(bank),
                k,
            }));
        }
        "mask" => {
            let mut p = Params::of_call("`mask`", span, args, FA_METHODS.params("mask"), diags);
            let rate = match p.positional_or("rate") {
                None => MASK_RATE,
                Some(e) => match crate::resolve::params::number(e, diags) {
                    Some(v) if (0.0..1.0).contains(&v) => v,
                    Some(v) => {
                        let range = Range {
                            min: 0.0,
                            min_inclusive: true,
                            max: 1.0,
                            max_inclusive: false,
                        };
                        diags.push(crate::resolve::params::range_error(
                            e,
                            "rate",
                            v,
                            range,
                            Some("the rate is the fraction of components set to zero"),
                        ));
                        MASK_RATE
                    }
                    None => MASK_RATE,
                },
            };
            let k = p.usize("k", 1, 1, diags);
            p.finish(diags);
            FeatureAug {
                method: FaMethod::Mask { rate },
                k,
            }
        }
        "mixup" => {
            let mut p = Params::of_call("`mixup`", span, args, FA_METHODS.params("mixup"), diags);
            let alpha = p.f64(
                "alpha",
                MIXUP_ALPHA,
                Range {
                    min: 0.0,
                    min_inclusive: false,
                    max: 1.0,
                    max_inclusive: true,
                },
                diags,
            );
            let noise = match p.get("noise") {
                Some(expr) => mixup_noise(expr, diags)?,
                None => {
                    diags.push(
                        Diagnostic::error("fa::resolve::missing_param", expr.span, "`mixup` needs a `noise`", "no noise given")
                            .with_help("write `noise: nn(bank: 65536)`, `noise: batch` or `noise: gaussian(sigma: 0.2)`"),
                    );
                    return None;
                }
            };
            let k = p.usize("k", 1, 1, diags);
            p.finish(diags);
            FeatureAug {
                method: FaMethod::Mixup { alpha, noise },
                k,
            }
        }
        other => {
            diags.push(unknown_name(
                "fa::resolve::unknown_fa",
                span,
                (
                    format!("unknown feature augmentation `{other}`"),
                    "unknown method",
                ),
                other,
                &FA_METHODS.names(),
                || format!("methods are {}", quote_list(&FA_METHODS.names())),
            ));
            return None;
        }
    };
    Some(Some(method))
}

fn bank(p: &mut Params<'_>, diags: &mut Vec<Diagnostic>) -> BankConfig {
    let defaults = BankConfig::default();
    let size = p.usize("bank", defaults.size, 1, diags);
    let grad = p.choice(
        "grad",
        defaults.grad,
        &[
            ("none", NnGrad::None),
            ("straight", NnGrad::StraightThrough),
        ],
        diags,
    );
    let exclude_self = p.bool("exclude_self", defaults.exclude_self, diags);
    BankConfig {
        size,
        grad,
        exclude_self,
    }
}

fn mixup_noise(expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<MixupNoise> {
    let (name, args, span) = callee(expr, "a noise (`nn(...)`, `batch`, `gaussian(...)`)", diags)?;
    match name {
        "nn" => {
            let mut p = Params::of_call("`nn` noise", span, args, MIXUP_NOISES.params("nn"), diags);
            let bank = bank(&mut p, diags);
            p.finish(diags);
            Some(MixupNoise::Nn(bank))
        }
        "batch" => {
            Params::of_call(
                "`batch` noise",
                span,
                args,
                MIXUP_NOISES.params("batch"),
                diags,
            )
            .finish(diags);
            Some(MixupNoise::Batch)
        }
        "gaussian" => {
            let mut p = Params::of_call(
                "`gaussian` noise",
                span,
                args,
                MIXUP_NOISES.params("gaussian"),
                diags,
            );
            // `variance` is the other reading of the paper's N(0, 0.2): σ² = 0.2.
            let sigma = if p.get("variance").is_some() && p.get("sigma").is_none() {
                p.f64("variance", GAUSSIAN_SIGMA, Range::POSITIVE, diags)
                    .sqrt()
            } else {
                p.f64("sigma", GAUSSIAN_SIGMA, Range::POSITIVE, diags)
            };
            let space = p.choice(
                "space",
                NoiseSpace::Unit,
                &[("unit", NoiseSpace::Unit), ("raw", NoiseSpace::Raw)],
                diags,
            );
            p.finish(diags);
            Some(MixupNoise::Gaussian { sigma, space })
        }
        other => {
            diags.push(unknown_name(
                "fa::resolve::unknown_choice",
                span,
                (format!("unknown mixup noise `{other}`"), "unknown noise"),
                other,
                &MIXUP_NOISES.names(),
                || "noises are `nn(...)`, `batch`, `gaussian(sigma: ...)`".into(),
            ));
            None
        }
    }
}
