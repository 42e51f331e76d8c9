//! Structure: the graph's size, every node's inputs, an execution order (no cycles), terms
//! whose views can be swapped, and values that reach no loss.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::visit::EdgeRef;
use petgraph::Direction;

use super::{error, warning, Ancestors, Problem, TermInfo, MAX_NODES};
use crate::ir::{EdgeRole, Model, NodeId, NodeKind};

/// The execution order of a well-formed graph, or every structural problem: too many nodes,
/// a node with the wrong inputs, a cycle.
pub(super) fn execution_order(model: &Model) -> Result<Vec<NodeId>, Vec<Problem>> {
    let graph = &model.graph;
    let mut problems = Vec::new();
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
    Ok(order)
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

/// A symmetric term is evaluated again with its two views exchanged, so each side must come
/// from exactly one view of its own.
pub(super) fn symmetric_terms(
    model: &Model,
    terms: &[TermInfo],
    ancestors: &Ancestors,
    problems: &mut Vec<Problem>,
) {
    let graph = &model.graph;
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
    for term in terms {
        let weight = &graph[term.node];
        let NodeKind::Loss(loss) = &weight.kind else {
            continue;
        };
        if !loss.symmetric {
            continue;
        }
        let (lv, rv) = (view_set(term.left), view_set(term.right));
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

/// Values no loss uses: a branch from a view that reaches no loss, or a computed value that
/// nothing consumes.
pub(super) fn unused_values(
    model: &Model,
    order: &[NodeId],
    terms: &[TermInfo],
    ancestors: &Ancestors,
    problems: &mut Vec<Problem>,
) {
    let graph = &model.graph;
    let losses: Vec<NodeId> = terms.iter().map(|t| t.node).collect();
    for &node in order {
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
}
