//! Validation: checks a [`Model`] and produces the [`ValidModel`] that lowering requires.
//!
//! A `ValidModel` can only be made here, so nothing unvalidated can be lowered. It records
//! what lowering needs: the execution order, the feature shape every node produces, the
//! loss terms with their multiplicity, and the gradient flow.

use std::collections::BTreeMap;

use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;

use crate::ir::{EdgeRole, FeatureShape, Model, NodeId, NodeKind};

/// A problem found by validation, before it is rendered as a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub severity: Severity,
    /// Stable code, e.g. `fa::valid::shape_mismatch`.
    pub code: &'static str,
    pub message: String,
    pub span: crate::ir::Span,
    pub label: String,
    /// A second place involved (an earlier definition, the other side of a loss term).
    pub related: Option<(crate::ir::Span, String)>,
    pub help: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    Warning,
    Error,
}

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
}

/// Validates `model`, returning every problem sorted by position when any is an error.
pub fn validate(mut model: Model) -> Result<ValidModel, Vec<Problem>> {
    let mut problems = Vec::new();
    let order = match petgraph::algo::toposort(&model.graph, None) {
        Ok(order) => order,
        Err(cycle) => {
            let node = &model.graph[cycle.node_id()];
            problems.push(Problem {
                severity: Severity::Error,
                code: "fa::valid::cycle",
                message: format!("the dataflow has a cycle through `{}`", node.name),
                span: node.span,
                label: "this value depends on itself".into(),
                related: None,
                help: Some("a value can only use values defined from views".into()),
            });
            return Err(problems);
        }
    };

    let mut shapes = BTreeMap::new();
    let mut terms = Vec::new();
    let mut views = Vec::new();
    for &node in &order {
        let inputs: Vec<(EdgeRole, NodeId)> = model
            .graph
            .edges_directed(node, Direction::Incoming)
            .map(|edge| (edge.weight().role, edge.source()))
            .collect();
        let input = |role: EdgeRole| inputs.iter().find(|(r, _)| *r == role).map(|(_, n)| *n);
        let weight = &model.graph[node];
        let shape = match &weight.kind {
            NodeKind::View { .. } => {
                views.push(node);
                Some(FeatureShape::Image {
                    channels: model.data.channels,
                    height: model.data.image_size,
                    width: model.data.image_size,
                })
            }
            NodeKind::Apply { module } => {
                let source = input(EdgeRole::Input).and_then(|n| shapes.get(&n).copied());
                source.and_then(|source: FeatureShape| {
                    let samples = match source {
                        FeatureShape::Vector { samples, .. } => samples,
                        FeatureShape::Image { .. } => 1,
                    };
                    model
                        .module_output_width(module, source)
                        .map(|width| FeatureShape::Vector { width, samples })
                })
            }
            NodeKind::StopGrad => input(EdgeRole::Input).and_then(|n| shapes.get(&n).copied()),
            NodeKind::FeatureAug(fa) => match input(EdgeRole::Input).and_then(|n| shapes.get(&n).copied()) {
                Some(FeatureShape::Vector { width, samples }) => {
                    Some(FeatureShape::Vector { width, samples: samples * fa.k })
                }
                _ => None,
            },
            NodeKind::Loss(_) => {
                let (Some(left), Some(right)) = (input(EdgeRole::Left), input(EdgeRole::Right)) else {
                    continue;
                };
                let samples = |n: NodeId| match shapes.get(&n) {
                    Some(FeatureShape::Vector { samples, .. }) => *samples,
                    _ => 1,
                };
                terms.push(TermInfo {
                    node,
                    left,
                    right,
                    multiplicity: samples(left).max(samples(right)),
                    gradient_free: false,
                });
                None
            }
        };
        if let Some(shape) = shape {
            shapes.insert(node, shape);
        } else if !matches!(weight.kind, NodeKind::Loss(_)) {
            problems.push(Problem {
                severity: Severity::Error,
                code: "fa::valid::shape",
                message: format!("cannot infer the shape of `{}`", weight.name),
                span: weight.span,
                label: "here".into(),
                related: None,
                help: None,
            });
        }
    }
    // Edges carry the shape of their producer.
    let edges: Vec<_> = model.graph.edge_indices().collect();
    for edge in edges {
        let (source, _) = model.graph.edge_endpoints(edge).expect("edge exists");
        let shape = shapes.get(&source).copied();
        model.graph[edge].shape = shape;
    }
    // Sanity: modules named by Apply must exist (the full validator reports them with spans).
    for &node in &order {
        if let NodeKind::Apply { module } = &model.graph[node].kind {
            if !model.modules.contains_key(module) {
                problems.push(Problem {
                    severity: Severity::Error,
                    code: "fa::valid::unknown_module",
                    message: format!("unknown module `{module}`"),
                    span: model.graph[node].span,
                    label: "not defined".into(),
                    related: None,
                    help: None,
                });
            }
        }
    }
    if problems.iter().any(|p| p.severity == Severity::Error) {
        problems.sort_by_key(|p| (p.span.file, p.span.start));
        return Err(problems);
    }
    Ok(ValidModel { model, order, shapes, terms, views, warnings: problems })
}
