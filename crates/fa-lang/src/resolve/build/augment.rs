//! Augmentation pipelines: a `pipeline` definition read into its ops, nested pipelines
//! inlined, each op's parameters checked against the data it will see.

use super::Builder;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::*;
use crate::resolve::params::{callee, quote_list, type_error, unknown_name, Params, Range};
use crate::resolve::vocabulary::AUGMENTATIONS;
use crate::syntax::ast::{Expr, ExprKind};

impl Builder<'_> {
    pub(super) fn pipeline(
        &mut self,
        name: &str,
        span: Span,
        stack: &mut Vec<String>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Vec<AugOp>> {
        if let Some(pipeline) = self.pipelines.get(name) {
            return Some(pipeline.ops.clone());
        }
        let Some(def) = self.program.pipelines.get(name) else {
            let diagnostic = Diagnostic::error(
                "fa::resolve::unknown_pipeline",
                span,
                format!("no pipeline named `{name}`"),
                "not defined",
            );
            let help = did_you_mean(name, self.program.pipelines.keys().map(String::as_str))
                .unwrap_or_else(|| {
                    "define it with `pipeline NAME = [crop, flip, ...]` or `use` the file that does"
                        .into()
                });
            diags.push(diagnostic.with_help(help));
            return None;
        };
        if stack.iter().any(|n| n == name) {
            diags.push(Diagnostic::error(
                "fa::resolve::cycle",
                span,
                format!("pipeline `{name}` includes itself"),
                "included again here",
            ));
            return None;
        }
        self.used_names.insert(name.to_string());
        stack.push(name.to_string());
        let value = def.value.clone();
        let items: Vec<&Expr> = match &value.kind {
            ExprKind::List(items) => items.iter().collect(),
            _ => {
                diags.push(type_error(
                    &value,
                    "a list of augmentations `[crop, flip, ...]`",
                ));
                stack.pop();
                return None;
            }
        };
        let mut ops = Vec::new();
        let mut ok = true;
        for item in items {
            match &item.kind {
                ExprKind::Name(other)
                    if !AUGMENTATIONS.contains(other)
                        && self.program.pipelines.contains_key(other) =>
                {
                    match self.pipeline(other, item.span, stack, diags) {
                        Some(inner) => ops.extend(inner),
                        None => ok = false,
                    }
                }
                _ => match aug_op(item, &self.data, diags) {
                    Some(op) => ops.push(op),
                    None => ok = false,
                },
            }
        }
        stack.pop();
        if !ok {
            return None;
        }
        self.pipelines.insert(
            name.to_string(),
            Pipeline {
                name: name.to_string(),
                ops: ops.clone(),
                span: def.name.span,
            },
        );
        Some(ops)
    }
}

fn aug_op(expr: &Expr, data: &DataConfig, diags: &mut Vec<Diagnostic>) -> Option<AugOp> {
    let (name, args, span) = callee(
        expr,
        "an augmentation such as `crop` or `blur(p: 0.1)`",
        diags,
    )?;
    let op = match name {
        "crop" => {
            let mut p = Params::of_call("`crop`", span, args, AUGMENTATIONS.params("crop"), diags);
            let size = p.usize("size", data.image_size, 1, diags);
            let scale = p.pair(
                "scale",
                (0.08, 1.0),
                Range {
                    min: 0.0,
                    min_inclusive: false,
                    max: 1.0,
                    max_inclusive: true,
                },
                diags,
            );
            let ratio = p.pair("ratio", (3.0 / 4.0, 4.0 / 3.0), Range::POSITIVE, diags);
            let interpolation = p.choice(
                "interpolation",
                Interpolation::Bicubic,
                &[
                    ("bicubic", Interpolation::Bicubic),
                    ("bilinear", Interpolation::Bilinear),
                ],
                diags,
            );
            p.finish(diags);
            AugOp::RandomResizedCrop {
                size,
                scale,
                ratio,
                interpolation,
            }
        }
        "flip" => {
            let mut p = Params::of_call("`flip`", span, args, AUGMENTATIONS.params("flip"), diags);
            let probability = p.f64("p", 0.5, Range::PROBABILITY, diags);
            p.finish(diags);
            AugOp::HorizontalFlip { p: probability }
        }
        "jitter" => {
            let mut p = Params::of_call(
                "`jitter`",
                span,
                args,
                AUGMENTATIONS.params("jitter"),
                diags,
            );
            let brightness = p.f64("brightness", 0.4, Range::NON_NEGATIVE, diags);
            let contrast = p.f64("contrast", 0.4, Range::NON_NEGATIVE, diags);
            let saturation = p.f64("saturation", 0.2, Range::NON_NEGATIVE, diags);
            let hue = p.f64("hue", 0.1, Range::closed(0.0, 0.5), diags);
            let probability = p.f64("p", 0.8, Range::PROBABILITY, diags);
            p.finish(diags);
            AugOp::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
                p: probability,
            }
        }
        "grayscale" | "greyscale" => {
            let mut p = Params::of_call(
                "`grayscale`",
                span,
                args,
                AUGMENTATIONS.params("grayscale"),
                diags,
            );
            let probability = p.f64("p", 0.2, Range::PROBABILITY, diags);
            p.finish(diags);
            AugOp::Grayscale { p: probability }
        }
        "blur" => {
            let mut p = Params::of_call("`blur`", span, args, AUGMENTATIONS.params("blur"), diags);
            let probability = p.f64("p", 0.5, Range::PROBABILITY, diags);
            let sigma = p.pair("sigma", (0.1, 2.0), Range::POSITIVE, diags);
            p.finish(diags);
            AugOp::GaussianBlur {
                p: probability,
                sigma,
            }
        }
        "solarize" => {
            let mut p = Params::of_call(
                "`solarize`",
                span,
                args,
                AUGMENTATIONS.params("solarize"),
                diags,
            );
            let probability = p.f64("p", 0.2, Range::PROBABILITY, diags);
            let threshold = p.f64("threshold", 0.5, Range::PROBABILITY, diags);
            p.finish(diags);
            AugOp::Solarize {
                p: probability,
                threshold,
            }
        }
        "normalize" => {
            let mut p = Params::of_call(
                "`normalize`",
                span,
                args,
                AUGMENTATIONS.params("normalize"),
                diags,
            );
            let (default_mean, default_std) = if data.channels == 1 {
                (vec![0.5], vec![0.5])
            } else {
                (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
            };
            let mean = channel_values(p.get("mean"), "mean", data.channels, Range::ANY, diags)
                .unwrap_or(default_mean);
            let std = channel_values(p.get("std"), "std", data.channels, Range::POSITIVE, diags)
                .unwrap_or(default_std);
            p.finish(diags);
            AugOp::Normalize { mean, std }
        }
        other => {
            diags.push(unknown_name(
                "fa::resolve::unknown_aug",
                span,
                (
                    format!("unknown augmentation `{other}`"),
                    "unknown augmentation",
                ),
                other,
                &AUGMENTATIONS.names(),
                || format!("augmentations are {}", quote_list(&AUGMENTATIONS.names())),
            ));
            return None;
        }
    };
    Some(op)
}

fn channel_values(
    expr: Option<&Expr>,
    name: &str,
    channels: usize,
    range: Range,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<f64>> {
    let expr = expr?;
    let items: Vec<&Expr> = match &expr.kind {
        ExprKind::Tuple(items) | ExprKind::List(items) => items.iter().collect(),
        ExprKind::Number { .. } => vec![expr],
        _ => {
            diags.push(type_error(expr, "one number per channel"));
            return None;
        }
    };
    if items.len() != channels {
        diags.push(
            Diagnostic::error(
                "fa::resolve::channels",
                expr.span,
                format!(
                    "`{name}` has {} values but the data has {channels} channel{}",
                    items.len(),
                    if channels == 1 { "" } else { "s" }
                ),
                "wrong number of values",
            )
            .with_help("give one value per channel (`data.channels`)"),
        );
        return None;
    }
    let mut out = Vec::new();
    for item in items {
        let value = crate::resolve::params::number(item, diags)?;
        if !range.contains(value) {
            diags.push(crate::resolve::params::range_error(
                item, name, value, range, None,
            ));
            return None;
        }
        out.push(value);
    }
    Some(out)
}
