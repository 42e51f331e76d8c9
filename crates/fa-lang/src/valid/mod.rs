//! Validation: checks a [`Model`] and produces the [`ValidModel`] that lowering requires.
//!
//! A `ValidModel` can only be made here, so nothing unvalidated can be lowered. It records
//! what lowering needs: the execution order, the feature shape every node produces, the
//! loss terms with their multiplicity, and the gradient flow. Every problem is reported,
//! sorted by position; warnings grounded in the paper cite the table or section.

mod advice;
mod flow;
mod shapes;
mod structure;
mod values;

use std::collections::{BTreeMap, BTreeSet};

use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;

use crate::ir::{EdgeRole, FeatureShape, Model, NodeId, Span};

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

/// Every node's ancestors, itself included.
type Ancestors = BTreeMap<NodeId, BTreeSet<NodeId>>;

/// Validates `model`, returning every problem sorted by position when any is an error.
///
/// The passes: structure (inputs, order), shapes, gradient flow, then the checks that read
/// them, structural and advisory.
pub fn validate(mut model: Model) -> Result<ValidModel, Vec<Problem>> {
    let order = structure::execution_order(&model)?;
    let mut problems = Vec::new();
    values::check(&model, &mut problems);
    let shapes::Shapes {
        shapes,
        mut terms,
        views,
    } = shapes::infer(&model, &order, &mut problems);
    let ancestors = flow::ancestors(&model, &order);
    let flow = flow::gradient_flow(&model, &order, &shapes, &mut terms);
    advice::feature_augmentations(&model, &order, &mut problems);
    advice::terms(&model, &terms, &ancestors, &mut problems);
    structure::symmetric_terms(&model, &terms, &ancestors, &mut problems);
    flow::untrained(&model, &terms, &flow, &mut problems);
    structure::unused_values(&model, &order, &terms, &ancestors, &mut problems);

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
        gradient: flow.gradient,
    })
}
