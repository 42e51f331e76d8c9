//! Advice: warnings grounded in the paper (mask rates, banks holding the whole dataset, FA on
//! both sides, a positive without stop-gradient, BYOL without predictor or detached target).

use super::{dataset_size, warning, Ancestors, Problem, TermInfo};
use crate::ir::{FaMethod, LossKind, MixupNoise, Model, ModuleRole, NodeId, NodeKind};

/// Warnings about the settings of each FA node.
pub(super) fn feature_augmentations(model: &Model, order: &[NodeId], problems: &mut Vec<Problem>) {
    for &node in order {
        let weight = &model.graph[node];
        let NodeKind::FeatureAug(fa) = &weight.kind else {
            continue;
        };
        if let FaMethod::Mask { rate } = fa.method {
            if rate >= 0.5 {
                problems.push(
                    warning("fa::valid::mask_rate", weight.span, format!("masking {}% of the components hurt in the paper", (rate * 100.0).round()), "large mask")
                        .with_help("Section III-B: 20% masking helps, 50% hurts; large masks leave the data manifold"),
                );
            }
        }
        let Some(size) = dataset_size(model) else {
            continue;
        };
        let bank = match &fa.method {
            FaMethod::Nn(bank) => bank,
            FaMethod::Mixup {
                noise: MixupNoise::Nn(bank),
                ..
            } => bank,
            _ => continue,
        };
        if bank.size >= size && !bank.exclude_self {
            problems.push(
                warning(
                    "fa::valid::bank_self",
                    weight.span,
                    format!("the bank ({}) holds the whole dataset ({size} images), so the nearest neighbour is often the sample itself", bank.size),
                    "bank ≥ dataset",
                )
                .with_help("add `exclude_self: true`, or make the bank smaller than the dataset"),
            );
        }
    }
}

/// Warnings about each loss term: what its sides are computed from.
pub(super) fn terms(
    model: &Model,
    terms: &[TermInfo],
    ancestors: &Ancestors,
    problems: &mut Vec<Problem>,
) {
    let graph = &model.graph;
    let has = |node: NodeId, test: &dyn Fn(&NodeKind) -> bool| {
        ancestors
            .get(&node)
            .is_some_and(|set| set.iter().any(|n| test(&graph[*n].kind)))
    };
    let role_is = |kind: &NodeKind, role: ModuleRole| match kind {
        NodeKind::Apply { module } => model.modules.get(module).is_some_and(|m| m.role == role),
        _ => false,
    };
    let is_fa = |kind: &NodeKind| matches!(kind, NodeKind::FeatureAug(_));
    let is_detached =
        |kind: &NodeKind| matches!(kind, NodeKind::StopGrad) || role_is(kind, ModuleRole::Target);
    let is_predictor = |kind: &NodeKind| role_is(kind, ModuleRole::Predictor);
    for term in terms {
        let weight = &graph[term.node];
        let NodeKind::Loss(loss) = &weight.kind else {
            continue;
        };
        let (left, right) = (term.left, term.right);
        if left == right {
            problems.push(warning(
                "fa::valid::same_sides",
                weight.span,
                "both sides of the term are the same value",
                "compares a value with itself",
            ));
        }
        let fa_left = has(left, &is_fa);
        let fa_right = has(right, &is_fa);
        if fa_left && fa_right {
            problems.push(
                warning("fa::valid::fa_both_sides", weight.span, "both sides of the term are feature-augmented", "two FA views")
                    .with_help("Section III-A: two FA views as the positive pair was too hard and sometimes did not converge; contrast one FA view with an original view"),
            );
        }
        if (fa_left || fa_right)
            && matches!(loss.kind, LossKind::InfoNce { .. })
            && !has(right, &is_detached)
        {
            problems.push(
                warning("fa::valid::fa_positive_grad", graph[right].span, format!("the positive `{}` of an FA loss has no stop-gradient", graph[right].name), "no stopgrad on this positive")
                    .with_related(weight.span, "in this term")
                    .with_help("Table II: without stop-gradient on the positive (z+ or FA(z+)) the gains of FA vanish or turn negative; add `-> stopgrad`"),
            );
        }
        if loss.kind == LossKind::Byol {
            if !has(left, &is_predictor) {
                problems.push(
                    warning("fa::valid::byol_no_predictor", graph[left].span, "a BYOL loss without a predictor on its online side", "no predictor upstream")
                        .with_related(weight.span, "in this term")
                        .with_help("without a predictor the regression loss collapses; add `-> q` with `predictor q = mlp(...)`"),
                );
            }
            if !has(right, &is_detached) {
                problems.push(
                    warning("fa::valid::byol_no_target", graph[right].span, "a BYOL loss whose target is neither an EMA copy nor stop-gradient", "trained target")
                        .with_related(weight.span, "in this term")
                        .with_help("the regression target must be detached: use an `ema` target or `-> stopgrad`, else the features collapse"),
                );
            }
        }
    }
}
