//! Validation: checks a [`Model`] and produces the [`ValidModel`] that lowering requires.
//!
//! A `ValidModel` can only be made here, so nothing unvalidated can be lowered. It records
//! what lowering needs: the execution order, the feature shape every node produces, the
//! loss terms with their multiplicity, and the gradient flow. Every problem is reported,
//! sorted by position; warnings grounded in the paper cite the table or section.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;

use crate::ir::{
    EdgeRole, FaMethod, FeatureShape, LossKind, MixupNoise, Model, ModuleKind, ModuleRole, NnGrad,
    NodeId, NodeKind, Span,
};

/// A problem found by validation: the project-wide diagnostic type.
pub use crate::diag::Diagnostic as Problem;
pub use crate::diag::Severity;

/// One loss term as lowering evaluates it.
#[derive(Clone, Debug, Serialize)]
pub struct TermInfo {
    /// The loss node.
    pub node: NodeId,
    pub left: NodeId,
    pub right: NodeId,
    /// How many terms this node contributes: the FA sample count of its sides (1 without FA).
    pub multiplicity: usize,
    /// True when no trainable parameter receives a gradient through this term.
    pub gradient_free: bool,
}

/// A validated model: the only input lowering accepts.
#[derive(Clone, Debug)]
pub struct ValidModel {
    model: Model,
    order: Vec<NodeId>,
    shapes: BTreeMap<NodeId, FeatureShape>,
    terms: Vec<TermInfo>,
    views: Vec<NodeId>,
    warnings: Vec<Problem>,
    gradient: BTreeMap<NodeId, bool>,
}

impl ValidModel {
    pub fn model(&self) -> &Model {
        &self.model
    }
    /// Every node in an order where producers come before consumers (loss nodes included).
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }
    /// The shape a non-loss node produces.
    pub fn shape(&self, node: NodeId) -> FeatureShape {
        self.shapes[&node]
    }
    /// The loss terms in source order.
    pub fn terms(&self) -> &[TermInfo] {
        &self.terms
    }
    /// The view nodes in source order; the trainer draws one augmented batch per view.
    pub fn views(&self) -> &[NodeId] {
        &self.views
    }
    /// The single input of a non-view, non-loss node.
    pub fn input(&self, node: NodeId) -> NodeId {
        self.model
            .graph
            .edges_directed(node, Direction::Incoming)
            .find(|edge| edge.weight().role == EdgeRole::Input)
            .map(|edge| edge.source())
            .expect("validated nodes have their input")
    }
    /// Total number of loss terms T used by `combine mean`.
    pub fn term_count(&self) -> usize {
        self.terms.iter().map(|term| term.multiplicity).sum()
    }
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }
    /// Whether some trainable parameter receives a gradient through the value of `node`.
    pub fn carries_gradient(&self, node: NodeId) -> bool {
        self.gradient.get(&node).copied().unwrap_or(false)
    }
    /// The node with the given name.
    pub fn node_by_name(&self, name: &str) -> Option<NodeId> {
        self.model
            .graph
            .node_indices()
            .find(|n| self.model.graph[*n].name == name)
    }
}

/// The most dataflow nodes a model may have.
pub const MAX_NODES: usize = 10_000;

/// The number of training images, when known: `data.limit`, or the size of a known dataset.
pub fn dataset_size(model: &Model) -> Option<usize> {
    let known = known_size(&model.data.path);
    match (model.data.limit, known) {
        (Some(limit), Some(known)) => Some(limit.min(known)),
        (Some(limit), None) => Some(limit),
        (None, known) => known,
    }
}

fn known_size(path: &str) -> Option<usize> {
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .to_ascii_lowercase();
    match last.as_str() {
        "fashion-mnist" | "fashion_mnist" | "mnist" => Some(60_000),
        "cifar10" | "cifar-10" | "cifar100" | "cifar-100" => Some(50_000),
        _ => None,
    }
}

fn error(
    code: &'static str,
    span: Span,
    message: impl Into<String>,
    label: impl Into<String>,
) -> Problem {
    Problem::error(code, span, message, label)
}

fn warning(
    code: &'static str,
    span: Span,
    message: impl Into<String>,
    label: impl Into<String>,
) -> Problem {
    Problem::warning(code, span, message, label)
}

/// Validates `model`, returning every problem sorted by position when any is an error.
pub fn validate(mut model: Model) -> Result<ValidModel, Vec<Problem>> {
    let mut problems = Vec::new();
    let graph = &model.graph;
    // Gradient and ancestor analysis is quadratic in the node count; no model is this big.
    if graph.node_count() > MAX_NODES {
        return Err(vec![error(
            "fa::valid::too_large",
            model.span,
            format!(
                "the dataflow has {} nodes, more than the limit of {MAX_NODES}",
                graph.node_count()
            ),
            "this model",
        )]);
    }

    // Arity: hand-built graphs can get this wrong; resolve never does.
    for node in graph.node_indices() {
        let weight = &graph[node];
        let roles: Vec<EdgeRole> = graph
            .edges_directed(node, Direction::Incoming)
            .map(|e| e.weight().role)
            .collect();
        let count = |role: EdgeRole| roles.iter().filter(|r| **r == role).count();
        let ok = match weight.kind {
            NodeKind::View { .. } => roles.is_empty(),
            NodeKind::Loss(_) => {
                count(EdgeRole::Left) == 1 && count(EdgeRole::Right) == 1 && roles.len() == 2
            }
            _ => count(EdgeRole::Input) == 1 && roles.len() == 1,
        };
        if !ok {
            problems.push(error(
                "fa::valid::arity",
                weight.span,
                format!("`{}` has the wrong inputs", weight.name),
                "malformed node",
            ));
        }
    }

    let order = match source_order_toposort(graph) {
        Some(order) => order,
        None => {
            for component in petgraph::algo::tarjan_scc(graph) {
                let cyclic = component.len() > 1 || graph.contains_edge(component[0], component[0]);
                if !cyclic {
                    continue;
                }
                let mut names: Vec<&str> = component
                    .iter()
                    .rev()
                    .map(|n| graph[*n].name.as_str())
                    .collect();
                names.push(names[0]);
                let first = component[component.len() - 1];
                problems.push(
                    error(
                        "fa::valid::cycle",
                        graph[first].span,
                        format!("the dataflow has a cycle: {}", names.join(" → ")),
                        "this value depends on itself",
                    )
                    .with_help("a value can only use values computed from views"),
                );
            }
            crate::diag::sort_and_dedup(&mut problems);
            return Err(problems);
        }
    };
    if problems.iter().any(Problem::is_error) {
        crate::diag::sort_and_dedup(&mut problems);
        return Err(problems);
    }

    let input_of = |node: NodeId, role: EdgeRole| {
        graph
            .edges_directed(node, Direction::Incoming)
            .find(|e| e.weight().role == role)
            .map(|e| e.source())
    };

    // Shapes, gradient flow, ancestors.
    let mut shapes: BTreeMap<NodeId, FeatureShape> = BTreeMap::new();
    let mut gradient: BTreeMap<NodeId, bool> = BTreeMap::new();
    let mut trained: BTreeMap<NodeId, BTreeSet<String>> = BTreeMap::new();
    let mut ancestors: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
    // First input width each MLP saw, with the place, to check shared weights.
    let mut first_input: BTreeMap<String, (usize, Span)> = BTreeMap::new();
    let mut terms = Vec::new();
    let mut views = Vec::new();

    for &node in &order {
        let weight = &graph[node];
        let input = input_of(node, EdgeRole::Input);
        let mut own_ancestors: BTreeSet<NodeId> = BTreeSet::from([node]);
        for parent in graph.neighbors_directed(node, Direction::Incoming) {
            if let Some(set) = ancestors.get(&parent) {
                own_ancestors.extend(set.iter().copied());
            }
        }
        ancestors.insert(node, own_ancestors);
        let input_shape = input.and_then(|i| shapes.get(&i).copied());
        let input_grad = input
            .and_then(|i| gradient.get(&i).copied())
            .unwrap_or(false);
        let input_trained = input
            .and_then(|i| trained.get(&i).cloned())
            .unwrap_or_default();
        let (shape, grad, params) = match &weight.kind {
            NodeKind::View { pipeline } => {
                views.push(node);
                if !model.pipelines.contains_key(pipeline) {
                    problems.push(error(
                        "fa::valid::unknown_pipeline",
                        weight.span,
                        format!("unknown pipeline `{pipeline}`"),
                        "not defined",
                    ));
                }
                let size = model.data.image_size;
                (
                    Some(FeatureShape::Image {
                        channels: model.data.channels,
                        height: size,
                        width: size,
                    }),
                    false,
                    BTreeSet::new(),
                )
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
                        &model,
                        member,
                        current,
                        weight.span,
                        &weight.name,
                        &mut first_input,
                        &mut problems,
                    );
                }
                let trainable = def.role != ModuleRole::Target;
                let mut params = input_trained.clone();
                if trainable {
                    params.insert(module.clone());
                }
                (shape, trainable || input_grad, params)
            }
            NodeKind::StopGrad => (input_shape, false, BTreeSet::new()),
            NodeKind::FeatureAug(fa) => {
                let shape = match input_shape {
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
                };
                let passes = match &fa.method {
                    FaMethod::Nn(bank) => bank.grad == NnGrad::StraightThrough,
                    _ => true,
                };
                if let FaMethod::Mask { rate } = fa.method {
                    if rate >= 0.5 {
                        problems.push(
                            warning("fa::valid::mask_rate", weight.span, format!("masking {}% of the components hurt in the paper", (rate * 100.0).round()), "large mask")
                                .with_help("Section III-B: 20% masking helps, 50% hurts; large masks leave the data manifold"),
                        );
                    }
                }
                if let Some(size) = dataset_size(&model) {
                    let bank = match &fa.method {
                        FaMethod::Nn(bank) => Some(bank),
                        FaMethod::Mixup {
                            noise: MixupNoise::Nn(bank),
                            ..
                        } => Some(bank),
                        _ => None,
                    };
                    if let Some(bank) = bank {
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
                (
                    shape,
                    passes && input_grad,
                    if passes {
                        input_trained
                    } else {
                        BTreeSet::new()
                    },
                )
            }
            NodeKind::Loss(term) => {
                let (Some(left), Some(right)) = (
                    input_of(node, EdgeRole::Left),
                    input_of(node, EdgeRole::Right),
                ) else {
                    continue;
                };
                let (Some(left_shape), Some(right_shape)) =
                    (shapes.get(&left).copied(), shapes.get(&right).copied())
                else {
                    continue;
                };
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
                    continue;
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
                let grad_free = !gradient.get(&left).copied().unwrap_or(false)
                    && !gradient.get(&right).copied().unwrap_or(false);
                terms.push(TermInfo {
                    node,
                    left,
                    right,
                    multiplicity: ls.max(rs),
                    gradient_free: grad_free,
                });
                let _ = term;
                let mut params = trained.get(&left).cloned().unwrap_or_default();
                params.extend(trained.get(&right).cloned().unwrap_or_default());
                (None, false, params)
            }
        };
        match shape {
            Some(shape) => {
                shapes.insert(node, shape);
            }
            None if matches!(weight.kind, NodeKind::Loss(_)) => {}
            None => continue,
        }
        gradient.insert(node, grad);
        trained.insert(node, params);
    }

    // Checks per loss term.
    let has = |node: NodeId, test: &dyn Fn(&NodeKind) -> bool| {
        ancestors
            .get(&node)
            .is_some_and(|set| set.iter().any(|n| test(&graph[*n].kind)))
    };
    let is_fa = |kind: &NodeKind| matches!(kind, NodeKind::FeatureAug(_));
    let is_detached = |kind: &NodeKind| match kind {
        NodeKind::StopGrad => true,
        NodeKind::Apply { module } => model
            .modules
            .get(module)
            .is_some_and(|m| m.role == ModuleRole::Target),
        _ => false,
    };
    let is_predictor = |kind: &NodeKind| matches!(kind, NodeKind::Apply { module } if model.modules.get(module).is_some_and(|m| m.role == ModuleRole::Predictor));
    let mut reached: BTreeSet<String> = BTreeSet::new();
    for term in &terms {
        let weight = &graph[term.node];
        let NodeKind::Loss(loss) = &weight.kind else {
            continue;
        };
        reached.extend(trained.get(&term.node).cloned().unwrap_or_default());
        let (left, right) = (term.left, term.right);
        if term.gradient_free {
            problems.push(
                warning("fa::valid::gradient_free_term", weight.span, "no parameter receives a gradient through this term", "gradient-free term")
                    .with_help(format!(
                        "`{}` and `{}` are both detached (stop-gradient, EMA target or a nearest neighbour); the term still counts in `combine mean`",
                        graph[left].name, graph[right].name
                    )),
            );
        }
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
        if loss.symmetric {
            let view_set = |node: NodeId| -> BTreeSet<NodeId> {
                ancestors
                    .get(&node)
                    .map(|set| {
                        set.iter()
                            .copied()
                            .filter(|n| matches!(graph[*n].kind, NodeKind::View { .. }))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (lv, rv) = (view_set(left), view_set(right));
            if lv.len() != 1 || rv.len() != 1 || lv == rv {
                let total: BTreeSet<NodeId> = lv.union(&rv).copied().collect();
                problems.push(
                    error(
                        "fa::valid::symmetric_views",
                        weight.span,
                        format!("a symmetric term needs one view per side, two in all; found {} and {} ({} in all)", lv.len(), rv.len(), total.len()),
                        "cannot swap the views",
                    )
                    .with_help("symmetric means: evaluate again with the two views exchanged, so each side must come from its own view"),
                );
            }
        }
    }
    for (name, def) in &model.modules {
        if def.role != ModuleRole::Target && !reached.contains(name) && !terms.is_empty() {
            problems.push(
                warning("fa::valid::untrained_module", def.span, format!("no loss sends a gradient to `{name}`"), "never trained")
                    .with_help("every path from it to a loss is detached; its parameters stay at their initial values"),
            );
        }
    }
    // Values no loss uses.
    let losses: Vec<NodeId> = terms.iter().map(|t| t.node).collect();
    for &node in &order {
        let weight = &graph[node];
        if matches!(weight.kind, NodeKind::Loss(_)) {
            continue;
        }
        let reaches_loss = losses
            .iter()
            .any(|loss| ancestors.get(loss).is_some_and(|set| set.contains(&node)));
        if reaches_loss {
            continue;
        }
        if matches!(weight.kind, NodeKind::View { .. }) {
            problems.push(
                warning(
                    "fa::valid::no_loss",
                    weight.span,
                    format!("the branch from view `{}` reaches no loss", weight.name),
                    "unused branch",
                )
                .with_help(
                    "use the branch in a loss term, or remove it; it costs a forward pass per step",
                ),
            );
        } else if graph
            .neighbors_directed(node, Direction::Outgoing)
            .next()
            .is_none()
        {
            problems.push(
                warning(
                    "fa::valid::dangling",
                    weight.span,
                    format!("`{}` is computed but no loss uses it", weight.name),
                    "dangling value",
                )
                .with_help("use it in a loss term, or remove it"),
            );
        }
    }

    crate::diag::sort_and_dedup(&mut problems);
    if problems.iter().any(Problem::is_error) {
        return Err(problems);
    }
    let edges: Vec<_> = model.graph.edge_indices().collect();
    for edge in edges {
        let (source, _) = model.graph.edge_endpoints(edge).expect("edge exists");
        model.graph[edge].shape = shapes.get(&source).copied();
    }
    terms.sort_by_key(|t| t.node.index());
    Ok(ValidModel {
        model,
        order,
        shapes,
        terms,
        views,
        warnings: problems,
        gradient,
    })
}

/// A topological order that prefers earlier-created nodes (source order), so listings and
/// execution follow the file; `None` when the graph has a cycle.
fn source_order_toposort(graph: &crate::ir::Graph) -> Option<Vec<NodeId>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut pending: BTreeMap<NodeId, usize> = graph
        .node_indices()
        .map(|n| (n, graph.neighbors_directed(n, Direction::Incoming).count()))
        .collect();
    let mut ready: BinaryHeap<Reverse<usize>> = pending
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(n, _)| Reverse(n.index()))
        .collect();
    let mut order = Vec::with_capacity(pending.len());
    while let Some(Reverse(index)) = ready.pop() {
        let node = NodeId::new(index);
        order.push(node);
        for edge in graph.edges_directed(node, Direction::Outgoing) {
            let count = pending
                .get_mut(&edge.target())
                .expect("edge target is a node");
            *count -= 1;
            if *count == 0 {
                ready.push(Reverse(edge.target().index()));
            }
        }
    }
    (order.len() == pending.len()).then_some(order)
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
