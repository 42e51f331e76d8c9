//! Gradient flow: which values carry a gradient to a trainable parameter, which modules each
//! loss term trains, and the terms and modules that no gradient reaches.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::Direction;

use super::shapes::input_of;
use super::{warning, Ancestors, Problem, TermInfo};
use crate::ir::{EdgeRole, FaMethod, FeatureShape, Model, ModuleRole, NnGrad, NodeId, NodeKind};

/// Every node's ancestors, itself included.
pub(super) fn ancestors(model: &Model, order: &[NodeId]) -> Ancestors {
    let mut ancestors: Ancestors = BTreeMap::new();
    for &node in order {
        let mut own: BTreeSet<NodeId> = BTreeSet::from([node]);
        for parent in model.graph.neighbors_directed(node, Direction::Incoming) {
            if let Some(set) = ancestors.get(&parent) {
                own.extend(set.iter().copied());
            }
        }
        ancestors.insert(node, own);
    }
    ancestors
}

/// Gradient flow through the nodes that have a shape and the terms: whether each value
/// carries a gradient, and the trainable modules it sends one to.
pub(super) struct Flow {
    pub gradient: BTreeMap<NodeId, bool>,
    pub trained: BTreeMap<NodeId, BTreeSet<String>>,
}

/// Follows the gradient through `order` and marks the terms it never reaches.
pub(super) fn gradient_flow(
    model: &Model,
    order: &[NodeId],
    shapes: &BTreeMap<NodeId, FeatureShape>,
    terms: &mut [TermInfo],
) -> Flow {
    let mut flow = Flow {
        gradient: BTreeMap::new(),
        trained: BTreeMap::new(),
    };
    for &node in order {
        let input = input_of(model, node, EdgeRole::Input);
        let input_grad = input
            .and_then(|i| flow.gradient.get(&i).copied())
            .unwrap_or(false);
        let input_trained = input
            .and_then(|i| flow.trained.get(&i).cloned())
            .unwrap_or_default();
        let (grad, params) = match &model.graph[node].kind {
            // Only nodes with a shape carry anything.
            kind if !matches!(kind, NodeKind::Loss(_)) && !shapes.contains_key(&node) => continue,
            NodeKind::View { .. } | NodeKind::StopGrad => (false, BTreeSet::new()),
            NodeKind::Apply { module } => {
                let trainable = model
                    .modules
                    .get(module)
                    .is_some_and(|def| def.role != ModuleRole::Target);
                let mut params = input_trained;
                if trainable {
                    params.insert(module.clone());
                }
                (trainable || input_grad, params)
            }
            NodeKind::FeatureAug(fa) => {
                // A nearest neighbour is a constant unless it passes the gradient straight through.
                let passes = match &fa.method {
                    FaMethod::Nn(bank) => bank.grad == NnGrad::StraightThrough,
                    _ => true,
                };
                if passes {
                    (input_grad, input_trained)
                } else {
                    (false, BTreeSet::new())
                }
            }
            NodeKind::Loss(_) => {
                let Some(term) = terms.iter_mut().find(|term| term.node == node) else {
                    continue;
                };
                let carries = |n: NodeId| flow.gradient.get(&n).copied().unwrap_or(false);
                term.gradient_free = !carries(term.left) && !carries(term.right);
                let mut params = flow.trained.get(&term.left).cloned().unwrap_or_default();
                params.extend(flow.trained.get(&term.right).cloned().unwrap_or_default());
                (false, params)
            }
        };
        flow.gradient.insert(node, grad);
        flow.trained.insert(node, params);
    }
    flow
}

/// Warns about terms through which no parameter is trained, and about online modules that
/// no term trains; a model in which no term trains anything is an error.
pub(super) fn untrained(
    model: &Model,
    terms: &[TermInfo],
    flow: &Flow,
    problems: &mut Vec<Problem>,
) {
    let graph = &model.graph;
    let reached: BTreeSet<String> = terms
        .iter()
        .flat_map(|term| flow.trained.get(&term.node).cloned().unwrap_or_default())
        .collect();
    if !terms.is_empty() && reached.is_empty() {
        let mut spans: Vec<_> = terms.iter().map(|term| graph[term.node].span).collect();
        spans.sort_by_key(|span| (span.file, span.start));
        let mut problem = super::error(
            "fa::valid::nothing_trained",
            spans[0],
            "no loss term sends a gradient to any parameter",
            "both sides detached",
        )
        .with_help("training would change nothing: remove a `stopgrad` (or use the online branch instead of an EMA target or a nearest neighbour) on one side of a term");
        for span in &spans[1..] {
            problem = problem.with_related(*span, "both sides detached too");
        }
        problems.push(problem);
        return;
    }
    for term in terms.iter().filter(|term| term.gradient_free) {
        problems.push(
            warning("fa::valid::gradient_free_term", graph[term.node].span, "no parameter receives a gradient through this term", "gradient-free term")
                .with_help(format!(
                    "`{}` and `{}` are both detached (stop-gradient, EMA target or a nearest neighbour); the term still counts in `combine mean`",
                    graph[term.left].name, graph[term.right].name
                )),
        );
    }
    for (name, def) in &model.modules {
        if def.role != ModuleRole::Target && !reached.contains(name) && !terms.is_empty() {
            problems.push(
                warning("fa::valid::untrained_module", def.span, format!("no loss sends a gradient to `{name}`"), "never trained")
                    .with_help("every path from it to a loss is detached; its parameters stay at their initial values"),
            );
        }
    }
}
