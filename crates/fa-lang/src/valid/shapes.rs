//! Shapes: the feature every node produces, in execution order, with the checks on widths,
//! input kinds and FA sample counts; and the loss terms with their multiplicity.

use std::collections::BTreeMap;

use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::{error, Problem, TermInfo};
use crate::ir::{
    EdgeRole, FaMethod, FeatureAug, FeatureShape, MixupNoise, Model, ModuleKind, Node, NodeId,
    NodeKind, Span,
};

/// What shape inference found: a shape per node that has one (loss nodes have none), the
/// loss terms whose sides are feature vectors, and the view nodes, all in execution order.
pub(super) struct Shapes {
    pub shapes: BTreeMap<NodeId, FeatureShape>,
    pub terms: Vec<TermInfo>,
    pub views: Vec<NodeId>,
}

/// The input of `node` in `role`.
pub(super) fn input_of(model: &Model, node: NodeId, role: EdgeRole) -> Option<NodeId> {
    model
        .graph
        .edges_directed(node, Direction::Incoming)
        .find(|e| e.weight().role == role)
        .map(|e| e.source())
}

/// Infers every node's shape in `order`; a node whose input has no shape gets none.
pub(super) fn infer(model: &Model, order: &[NodeId], problems: &mut Vec<Problem>) -> Shapes {
    let mut found = Shapes {
        shapes: BTreeMap::new(),
        terms: Vec::new(),
        views: Vec::new(),
    };
    // First input width each MLP saw, with the place, to check shared weights.
    let mut first_input: BTreeMap<String, (usize, Span)> = BTreeMap::new();
    for &node in order {
        let weight = &model.graph[node];
        let input_shape = input_of(model, node, EdgeRole::Input)
            .and_then(|input| found.shapes.get(&input).copied());
        let shape = match &weight.kind {
            NodeKind::View { pipeline } => {
                found.views.push(node);
                if !model.pipelines.contains_key(pipeline) {
                    problems.push(error(
                        "fa::valid::unknown_pipeline",
                        weight.span,
                        format!("unknown pipeline `{pipeline}`"),
                        "not defined",
                    ));
                }
                let size = model.data.image_size;
                Some(FeatureShape::Image {
                    channels: model.data.channels,
                    height: size,
                    width: size,
                })
            }
            NodeKind::Apply { module } => {
                let Some(def) = model.modules.get(module) else {
                    problems.push(error(
                        "fa::valid::unknown_module",
                        weight.span,
                        format!("unknown module `{module}`"),
                        "not defined",
                    ));
                    continue;
                };
                let Some(source) = input_shape else { continue };
                let chain: Vec<String> = match &def.kind {
                    ModuleKind::Ema { chain, .. } => chain.clone(),
                    _ => vec![module.clone()],
                };
                let mut shape = Some(source);
                for member in &chain {
                    let Some(current) = shape else { break };
                    shape = apply_shape(
                        model,
                        member,
                        current,
                        weight.span,
                        &weight.name,
                        &mut first_input,
                        problems,
                    );
                }
                shape
            }
            NodeKind::StopGrad => input_shape,
            NodeKind::FeatureAug(fa) => fa_shape(weight, fa, input_shape, problems),
            NodeKind::Loss(_) => {
                if let Some(term) = loss_term(model, node, &found.shapes, problems) {
                    found.terms.push(term);
                }
                None
            }
        };
        if let Some(shape) = shape {
            found.shapes.insert(node, shape);
        }
    }
    found
}

/// An FA node multiplies its input's samples by `k`; it needs feature vectors.
fn fa_shape(
    weight: &Node,
    fa: &FeatureAug,
    input: Option<FeatureShape>,
    problems: &mut Vec<Problem>,
) -> Option<FeatureShape> {
    let bank = match &fa.method {
        FaMethod::Nn(bank)
        | FaMethod::Mixup {
            noise: MixupNoise::Nn(bank),
            ..
        } => Some(bank),
        _ => None,
    };
    if let Some(bank) = bank.filter(|bank| fa.k > bank.size) {
        // Sample j takes the j-th nearest entry: a bank needs at least k of them.
        problems.push(
            error(
                "fa::valid::bank_too_small",
                weight.span,
                format!(
                    "{} samples need {} neighbours, but the bank holds {} entries",
                    fa.k, fa.k, bank.size
                ),
                "k larger than the bank",
            )
            .with_help("make the bank at least `k` entries large, or draw fewer samples"),
        );
    }
    match input {
        Some(FeatureShape::Vector { width, samples }) => Some(FeatureShape::Vector {
            width,
            samples: samples * fa.k,
        }),
        Some(FeatureShape::Image { .. }) => {
            problems.push(
                error(
                    "fa::valid::input_kind",
                    weight.span,
                    "feature augmentation needs feature vectors, not images",
                    "applied to images",
                )
                .with_help("apply it after an encoder (usually after the projector)"),
            );
            None
        }
        None => None,
    }
}

/// The term a loss node evaluates, when both sides are feature vectors; checks that the
/// sides have the same width and compatible sample counts. Gradient flow is filled in later.
fn loss_term(
    model: &Model,
    node: NodeId,
    shapes: &BTreeMap<NodeId, FeatureShape>,
    problems: &mut Vec<Problem>,
) -> Option<TermInfo> {
    let graph = &model.graph;
    let weight = &graph[node];
    let left = input_of(model, node, EdgeRole::Left)?;
    let right = input_of(model, node, EdgeRole::Right)?;
    let (left_shape, right_shape) = (*shapes.get(&left)?, *shapes.get(&right)?);
    let (
        FeatureShape::Vector {
            width: lw,
            samples: ls,
        },
        FeatureShape::Vector {
            width: rw,
            samples: rs,
        },
    ) = (left_shape, right_shape)
    else {
        problems.push(
            error(
                "fa::valid::input_kind",
                weight.span,
                "a loss compares feature vectors, not images",
                "image input",
            )
            .with_help("apply an encoder to the view first"),
        );
        return None;
    };
    if lw != rw {
        problems.push(
            error(
                "fa::valid::loss_width",
                graph[left].span,
                format!("the loss compares `{}` ({lw} wide) with `{}` ({rw} wide)", graph[left].name, graph[right].name),
                format!("{lw} wide"),
            )
            .with_related(graph[right].span, format!("{rw} wide"))
            .with_help("both sides of a loss term need the same width: check the last layer of the projector and predictor"),
        );
    }
    if ls > 1 && rs > 1 && ls != rs {
        problems.push(
            error(
                "fa::valid::samples",
                weight.span,
                format!("the sides carry {ls} and {rs} FA samples"),
                "sample counts differ",
            )
            .with_help("use the same `k` on both sides, or FA on one side only"),
        );
    }
    Some(TermInfo {
        node,
        left,
        right,
        multiplicity: ls.max(rs),
        gradient_free: false,
    })
}

/// The output of applying `module` to `input`, checking the input kind and that a shared
/// MLP always sees the same width.
fn apply_shape(
    model: &Model,
    module: &str,
    input: FeatureShape,
    span: Span,
    node_name: &str,
    first_input: &mut BTreeMap<String, (usize, Span)>,
    problems: &mut Vec<Problem>,
) -> Option<FeatureShape> {
    let def = model.modules.get(module)?;
    let samples = match input {
        FeatureShape::Vector { samples, .. } => samples,
        FeatureShape::Image { .. } => 1,
    };
    match (&def.kind, input) {
        (ModuleKind::ResNet { .. } | ModuleKind::ConvNet { .. }, FeatureShape::Vector { .. }) => {
            problems.push(
                error(
                    "fa::valid::input_kind",
                    span,
                    format!(
                        "`{module}` is an image encoder but `{node_name}` feeds it feature vectors"
                    ),
                    "features into an encoder",
                )
                .with_related(def.span, "defined here")
                .with_help("apply encoders directly after `view(...)`"),
            );
            None
        }
        (ModuleKind::Mlp { .. }, FeatureShape::Image { .. }) => {
            problems.push(
                error(
                    "fa::valid::input_kind",
                    span,
                    format!("`{module}` is an MLP but receives images"),
                    "images into an MLP",
                )
                .with_related(def.span, "defined here")
                .with_help("put an encoder between the view and the MLP"),
            );
            None
        }
        (ModuleKind::Mlp { widths, .. }, FeatureShape::Vector { width, .. }) => {
            match first_input.get(module) {
                Some((first, first_span)) if *first != width => {
                    problems.push(
                        error(
                            "fa::valid::width_mismatch",
                            span,
                            format!("`{module}` receives {width}-wide features here but {first}-wide ones elsewhere"),
                            format!("{width} wide"),
                        )
                        .with_related(*first_span, format!("{first} wide"))
                        .with_help("a module used twice shares its weights, so its input width must be the same everywhere"),
                    );
                    return None;
                }
                Some(_) => {}
                None => {
                    first_input.insert(module.to_string(), (width, span));
                }
            }
            Some(FeatureShape::Vector {
                width: *widths.last()?,
                samples,
            })
        }
        (ModuleKind::ConvNet { widths }, FeatureShape::Image { height, width, .. })
            if (height.min(width) >> widths.len().min(63)) == 0 =>
        {
            // Each block halves the image with a 2×2 max-pool (rounding down); a side that
            // reaches zero has nothing left to pool.
            let side = height.min(width);
            let fits = usize::BITS - 1 - side.max(1).leading_zeros();
            problems.push(
                error(
                    "fa::valid::input_too_small",
                    span,
                    format!(
                        "`{module}` halves its input {} times, but `{node_name}` gives it {height}×{width} images",
                        widths.len()
                    ),
                    format!("{side} pixels cannot be halved {} times", widths.len()),
                )
                .with_related(def.span, format!("{} blocks", widths.len()))
                .with_help(format!(
                    "images {side} pixels wide allow at most {fits} convnet blocks: remove blocks, or raise `image_size` (or the view's `crop` size) to at least {}",
                    1usize.checked_shl(widths.len() as u32).unwrap_or(usize::MAX)
                )),
            );
            // The output width is still known: shape inference goes on, so later checks do
            // not report the branch as unused.
            widths
                .last()
                .map(|&width| FeatureShape::Vector { width, samples })
        }
        (ModuleKind::Ema { chain, .. }, _) => {
            let mut shape = input;
            for member in chain {
                shape = apply_shape(model, member, shape, span, node_name, first_input, problems)?;
            }
            Some(shape)
        }
        _ => model
            .module_output_width(module, input)
            .map(|width| FeatureShape::Vector { width, samples }),
    }
}
