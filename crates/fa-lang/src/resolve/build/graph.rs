//! The dataflow graph: values (bindings) built from their chains, views, modules applied,
//! stop-gradient and FA nodes, identical applications shared.

use super::fa::fa_method;
use super::{BindingState, Builder};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::*;
use crate::resolve::params::{type_error, Params};
use crate::resolve::vocabulary::FA_METHODS;
use crate::syntax::ast::{Expr, ExprKind};

impl Builder<'_> {
    /// A loss side: the name of a value.
    pub(super) fn side(
        &mut self,
        expr: &Expr,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(NodeId, bool)> {
        match &expr.kind {
            ExprKind::Name(name) if self.program.bindings.contains_key(name) => {
                self.binding(name, expr.span, diags)
            }
            ExprKind::Name(name) => {
                diags.push(self.unknown_value(name, expr.span));
                None
            }
            _ => {
                diags.push(
                    Diagnostic::error("fa::resolve::loss_side", expr.span, "a loss side must name a value", "not a value name")
                        .with_help("bind the chain first: `augmented = positive -> fa mask(rate: 0.2)`, then use `augmented`"),
                );
                None
            }
        }
    }

    pub(super) fn unknown_value(&self, name: &str, span: Span) -> Diagnostic {
        let diagnostic = Diagnostic::error(
            "fa::resolve::unknown_value",
            span,
            format!("no value named `{name}`"),
            "not defined",
        );
        match did_you_mean(name, self.program.bindings.keys().map(String::as_str)) {
            Some(help) => diagnostic.with_help(help),
            None => diagnostic.with_help("define it with `NAME = view(PIPELINE) -> ...`"),
        }
    }

    /// The node a binding produces (`None` when it failed), and whether `fa none` was elided
    /// on the way (duplicate terms it causes are expected, not suspicious).
    pub(super) fn binding(
        &mut self,
        name: &str,
        use_span: Span,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(NodeId, bool)> {
        match self.bindings.get(name) {
            Some(BindingState::Done { node, identity }) => return node.map(|n| (n, *identity)),
            Some(BindingState::Building) => {
                let start = self.stack.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle: Vec<String> = self.stack[start..].to_vec();
                cycle.push(name.to_string());
                diags.push(
                    Diagnostic::error(
                        "fa::resolve::cycle",
                        use_span,
                        format!("the dataflow has a cycle: {}", cycle.join(" → ")),
                        "this use closes the cycle",
                    )
                    .with_related(
                        self.program.bindings[name].name.span,
                        format!("`{name}` is defined here"),
                    )
                    .with_help(
                        "every value must be computed from views without depending on itself",
                    ),
                );
                return None;
            }
            None => {}
        }
        let def = &self.program.bindings[name];
        self.bindings
            .insert(name.to_string(), BindingState::Building);
        self.stack.push(name.to_string());
        let value = def.value.clone();
        let result = self.chain(name, &value, diags);
        self.stack.pop();
        let (node, identity) = match result {
            Some((node, identity)) => (Some(node), identity),
            None => (None, false),
        };
        self.bindings
            .insert(name.to_string(), BindingState::Done { node, identity });
        node.map(|n| (n, identity))
    }

    pub(super) fn chain(
        &mut self,
        name: &str,
        value: &Expr,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(NodeId, bool)> {
        let steps: Vec<&Expr> = match &value.kind {
            ExprKind::Chain(steps) => steps.iter().collect(),
            _ => vec![value],
        };
        let last = steps.len() - 1;
        let mut identity = false;
        let mut current: Option<NodeId> = None;
        let mut counter = 0;
        for (index, step) in steps.iter().enumerate() {
            counter += 1;
            let node_name = if index == last {
                name.to_string()
            } else {
                format!("{name}.{counter}")
            };
            let Some(input) = current else {
                // The head: a view or another value.
                match &step.kind {
                    ExprKind::Call { name: callee, args } if callee.text == "view" => {
                        let pipeline = self.view_pipeline(callee.span, args, step.span, diags)?;
                        current = Some(self.graph.add_node(Node {
                            name: node_name,
                            kind: NodeKind::View { pipeline },
                            span: step.span,
                        }));
                    }
                    ExprKind::Name(other) if self.program.bindings.contains_key(other) => {
                        let (node, was_identity) = self.binding(other, step.span, diags)?;
                        identity |= was_identity;
                        current = Some(node);
                    }
                    ExprKind::Name(other)
                        if self.program.modules.contains_key(other) || other == "stopgrad" =>
                    {
                        diags.push(
                            Diagnostic::error(
                                "fa::resolve::chain_head",
                                step.span,
                                "a chain starts at a view or a value",
                                "a module needs an input",
                            )
                            .with_help(format!(
                                "start with `view(PIPELINE) -> {other}` or an existing value"
                            )),
                        );
                        return None;
                    }
                    ExprKind::Name(other) => {
                        diags.push(self.unknown_value(other, step.span));
                        return None;
                    }
                    _ => {
                        diags.push(
                            Diagnostic::error(
                                "fa::resolve::chain_head",
                                step.span,
                                format!("a chain cannot start with {}", step.describe()),
                                "not a view or value",
                            )
                            .with_help("start with `view(PIPELINE)` or an existing value"),
                        );
                        return None;
                    }
                }
                continue;
            };
            match &step.kind {
                ExprKind::Name(step_name) if step_name == "stopgrad" => {
                    current = Some(self.shared_node(
                        node_name,
                        "stopgrad",
                        NodeKind::StopGrad,
                        input,
                        step.span,
                    ));
                }
                ExprKind::Name(step_name) if self.program.modules.contains_key(step_name) => {
                    self.module(step_name, diags);
                    current = Some(self.shared_node(
                        node_name,
                        step_name,
                        NodeKind::Apply {
                            module: step_name.clone(),
                        },
                        input,
                        step.span,
                    ));
                }
                ExprKind::Name(step_name) if self.program.bindings.contains_key(step_name) => {
                    diags.push(
                        Diagnostic::error(
                            "fa::resolve::chain_value",
                            step.span,
                            format!("`{step_name}` is a value, not a module"),
                            "a value cannot take an input",
                        )
                        .with_help("only modules, `stopgrad` and `fa ...` can follow `->`"),
                    );
                    return None;
                }
                ExprKind::Name(step_name) => {
                    let diagnostic = Diagnostic::error(
                        "fa::resolve::unknown_module",
                        step.span,
                        format!("no module named `{step_name}`"),
                        "not defined",
                    );
                    let mut candidates: Vec<&str> =
                        self.program.modules.keys().map(String::as_str).collect();
                    candidates.push("stopgrad");
                    let help = did_you_mean(step_name, candidates).unwrap_or_else(|| {
                        "define it with `encoder NAME = ...` or another role".into()
                    });
                    diags.push(diagnostic.with_help(help));
                    return None;
                }
                ExprKind::Call { name: callee, .. } if callee.text == "view" => {
                    diags.push(
                        Diagnostic::error(
                            "fa::resolve::view_position",
                            step.span,
                            "`view` can only start a chain",
                            "a view has no input",
                        )
                        .with_help("start a new value: `name = view(PIPELINE) -> ...`"),
                    );
                    return None;
                }
                ExprKind::Fa(method) => match fa_method(method, diags) {
                    None => return None,
                    Some(None) => {
                        identity = true;
                        // `fa none` is the identity: the value is its input, no node.
                        current = Some(input);
                        counter -= 1;
                    }
                    Some(Some(fa)) => {
                        current = Some(self.graph.add_node(Node {
                            name: node_name,
                            kind: NodeKind::FeatureAug(fa),
                            span: step.span,
                        }));
                        self.graph.add_edge(
                            input,
                            current.expect("just set"),
                            Edge {
                                role: EdgeRole::Input,
                                shape: None,
                            },
                        );
                    }
                },
                ExprKind::Call { name: callee, .. } if FA_METHODS.contains(&callee.text) => {
                    diags.push(
                        Diagnostic::error(
                            "fa::resolve::missing_fa",
                            step.span,
                            format!("`{}` is a feature augmentation and needs `fa`", callee.text),
                            "write `fa` before it",
                        )
                        .with_help(format!("write `fa {}`", callee.text)),
                    );
                    return None;
                }
                _ => {
                    diags.push(
                        Diagnostic::error(
                            "fa::resolve::chain_step",
                            step.span,
                            format!("{} cannot be a chain step", step.describe()),
                            "not a step",
                        )
                        .with_help("steps are module names, `stopgrad` and `fa METHOD(...)`"),
                    );
                    return None;
                }
            }
        }
        current.map(|node| (node, identity))
    }

    /// A node applying `key` to `input`, reusing an identical one (same module, same input):
    /// they would compute the same value.
    pub(super) fn shared_node(
        &mut self,
        name: String,
        key: &str,
        kind: NodeKind,
        input: NodeId,
        span: Span,
    ) -> NodeId {
        if let Some(node) = self.shared.get(&(key.to_string(), input)) {
            return *node;
        }
        let node = self.graph.add_node(Node { name, kind, span });
        self.graph.add_edge(
            input,
            node,
            Edge {
                role: EdgeRole::Input,
                shape: None,
            },
        );
        self.shared.insert((key.to_string(), input), node);
        node
    }

    pub(super) fn view_pipeline(
        &mut self,
        callee_span: Span,
        args: &[crate::syntax::ast::Arg],
        span: Span,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<String> {
        let mut p = Params::of_call("`view`", callee_span, args, &["pipeline"], diags);
        let Some(expr) = p.positional_or("pipeline") else {
            diags.push(
                Diagnostic::error(
                    "fa::resolve::missing_param",
                    span,
                    "`view` needs a pipeline",
                    "no pipeline",
                )
                .with_help("write `view(byol_strong)`"),
            );
            return None;
        };
        p.finish(diags);
        let ExprKind::Name(name) = &expr.kind else {
            diags.push(type_error(expr, "a pipeline name"));
            return None;
        };
        self.pipeline(name, expr.span, &mut Vec::new(), diags)?;
        Some(name.clone())
    }
}
