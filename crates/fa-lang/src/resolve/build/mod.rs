//! Building one sweep cell's `ir::Model`: modules, pipelines, the dataflow graph and the
//! loss terms, with `fa none` as the identity and duplicate terms dropped.

mod augment;
mod fa;
mod graph;
mod module;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::config;
use super::params::{callee, unknown_name, Params, Range};
use super::program::Program;
use super::vocabulary::LOSSES;
use crate::diag::Diagnostic;
use crate::ir::*;
use crate::syntax::ast::Expr;
use crate::syntax::SourceMap;

enum BindingState {
    Building,
    Done {
        node: Option<NodeId>,
        identity: bool,
    },
}

struct Builder<'p> {
    program: &'p Program,
    main_file: FileId,
    graph: Graph,
    modules: BTreeMap<String, ModuleDef>,
    pipelines: BTreeMap<String, Pipeline>,
    bindings: HashMap<String, BindingState>,
    /// The chain of bindings being built, for cycle messages.
    stack: Vec<String>,
    /// Common subexpressions: (module or "stopgrad", input) → node.
    shared: HashMap<(String, NodeId), NodeId>,
    data: DataConfig,
    used_names: BTreeSet<String>,
}

pub fn build(
    program: &Program,
    name: &str,
    main_file: FileId,
    _sources: &SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> Option<Model> {
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let fallback = program
        .model_name
        .as_ref()
        .map(|n| n.span)
        .unwrap_or(Span::new(main_file, 0, 0));
    let sections = config::merge(program, diags);
    let data = config::data(sections.get("data"), fallback, diags);
    let optim = config::optim(sections.get("optim"), fallback, diags);
    let train = config::train(sections.get("train"), fallback, diags);
    let eval = config::eval(sections.get("eval"), fallback, diags);

    let mut builder = Builder {
        program,
        main_file,
        graph: Graph::default(),
        modules: BTreeMap::new(),
        pipelines: BTreeMap::new(),
        bindings: HashMap::new(),
        stack: Vec::new(),
        shared: HashMap::new(),
        data: data.clone(),
        used_names: BTreeSet::new(),
    };

    // Values of the main file are built in statement order first, so a value computed twice
    // (after `fa none` is elided) keeps the name written first, and values no loss uses are
    // still built for validation to report as dangling.
    for name in &program.binding_order {
        let def = &program.bindings[name];
        if def.main && !builder.bindings.contains_key(name) {
            builder.binding(name, def.name.span, diags);
        }
    }
    let mut combine: Option<(Combine, Span)> = None;
    let mut seen_terms: Vec<(String, NodeId, NodeId, bool, bool, Span)> = Vec::new();
    let mut term_count = 0;
    if program.losses.is_empty() {
        diags.push(
            Diagnostic::error(
                "fa::resolve::no_loss",
                fallback,
                "the model has no loss",
                "no `loss` statement in this model",
            )
            .with_help("add e.g. `loss infonce(tau: 0.2) { anchor ~ positive }`"),
        );
    }
    for loss in &program.losses {
        let kind = loss_kind(&loss.kind, diags);
        if loss.terms.is_empty() {
            diags.push(
                Diagnostic::error(
                    "fa::resolve::empty_loss",
                    loss.kind.span,
                    "this loss has no terms",
                    "no `a ~ b` inside its braces",
                )
                .with_help("write the pairs it compares, e.g. `{ anchor ~ positive }`, or remove the statement"),
            );
        }
        if let Some(expr) = &loss.combine {
            if let Some(mode) = config::combine(expr, diags) {
                match combine {
                    Some((previous, span)) if previous != mode => diags.push(
                        Diagnostic::error(
                            "fa::resolve::combine_conflict",
                            expr.span,
                            "the loss statements disagree on `combine`",
                            "differs from the earlier one",
                        )
                        .with_related(span, "combined this way first")
                        .with_help(
                            "the terms of all loss statements form one total; give `combine` once",
                        ),
                    ),
                    Some(_) => {}
                    None => combine = Some((mode, expr.span)),
                }
            }
        }
        for term in &loss.terms {
            let left = builder.side(&term.left, diags);
            let right = builder.side(&term.right, diags);
            let (Some(kind), Some((left, left_identity)), Some((right, right_identity))) =
                (kind, left, right)
            else {
                continue;
            };
            let key = format!("{kind:?}");
            if let Some(previous) = seen_terms.iter().find(|(k, l, r, s, _, _)| {
                *k == key && *l == left && *r == right && *s == term.symmetric
            }) {
                if !(left_identity || right_identity || previous.4) {
                    diags.push(
                        Diagnostic::warning("fa::resolve::duplicate_term", term.span, "this loss term repeats an earlier one", "duplicate term")
                            .with_related(previous.5, "the same term")
                            .with_help("a duplicate counts once; remove it, or it would only double the term's weight"),
                    );
                }
                continue;
            }
            seen_terms.push((
                key,
                left,
                right,
                term.symmetric,
                left_identity || right_identity,
                term.span,
            ));
            term_count += 1;
            let node = builder.graph.add_node(Node {
                name: format!("loss.{term_count}"),
                kind: NodeKind::Loss(LossTerm {
                    kind,
                    symmetric: term.symmetric,
                }),
                span: term.span,
            });
            builder.graph.add_edge(
                left,
                node,
                Edge {
                    role: EdgeRole::Left,
                    shape: None,
                },
            );
            builder.graph.add_edge(
                right,
                node,
                Edge {
                    role: EdgeRole::Right,
                    shape: None,
                },
            );
        }
    }
    // Unused definitions of the main file are still checked, then left out of the model.
    let used = builder.used_names.clone();
    for (name, def) in &program.modules {
        if def.main && !used.contains(name) {
            builder.module(name, diags);
        }
    }
    for (name, def) in &program.pipelines {
        if def.main && !used.contains(name) {
            builder.pipeline(name, def.name.span, &mut Vec::new(), diags);
        }
    }
    builder.modules.retain(|name, _| used.contains(name));
    builder.pipelines.retain(|name, _| used.contains(name));
    builder.used_names = used;
    for (name, def) in &program.modules {
        if def.main && !builder.used_names.contains(name) {
            diags.push(
                Diagnostic::warning(
                    "fa::resolve::unused_definition",
                    def.name.span,
                    format!("module `{name}` is never applied"),
                    "never used",
                )
                .with_help("apply it in a chain, or remove it"),
            );
        }
    }
    for (name, def) in &program.pipelines {
        if def.main && !builder.used_names.contains(name) {
            diags.push(
                Diagnostic::warning(
                    "fa::resolve::unused_definition",
                    def.name.span,
                    format!("pipeline `{name}` is never used"),
                    "never used",
                )
                .with_help("draw a view with it (`view(NAME)`), or remove it"),
            );
        }
    }
    if diags.iter().filter(|d| d.is_error()).count() > errors_before {
        return None;
    }
    Some(Model {
        name: name.to_string(),
        span: fallback,
        data,
        pipelines: builder.pipelines,
        modules: builder.modules,
        graph: builder.graph,
        combine: combine.map(|(c, _)| c).unwrap_or_default(),
        optim,
        train,
        eval,
    })
}

fn loss_kind(expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<LossKind> {
    let (name, args, span) = callee(expr, "a loss kind (`infonce(tau: 0.2)` or `byol`)", diags)?;
    match name {
        "infonce" => {
            let mut p = Params::of_call("`infonce`", span, args, LOSSES.params("infonce"), diags);
            let tau = p
                .positional_or("tau")
                .map(|e| (e, super::params::number(e, diags)));
            let tau = match tau {
                None => INFONCE_TAU,
                Some((_, None)) => INFONCE_TAU,
                Some((e, Some(v))) if !Range::POSITIVE.contains(v) => {
                    diags.push(super::params::range_error(
                        e,
                        "tau",
                        v,
                        Range::POSITIVE,
                        Some("the temperature divides the similarities"),
                    ));
                    INFONCE_TAU
                }
                Some((_, Some(v))) => v,
            };
            let negatives = p.choice(
                "negatives",
                Negatives::Positives,
                &[
                    ("positives", Negatives::Positives),
                    ("anchors", Negatives::Anchors),
                ],
                diags,
            );
            p.finish(diags);
            Some(LossKind::InfoNce { tau, negatives })
        }
        "byol" => {
            Params::of_call("`byol`", span, args, LOSSES.params("byol"), diags).finish(diags);
            Some(LossKind::Byol)
        }
        other => {
            diags.push(unknown_name(
                "fa::resolve::unknown_loss",
                span,
                (format!("unknown loss `{other}`"), "unknown loss"),
                other,
                &LOSSES.names(),
                || "losses are `infonce(tau: ...)` and `byol`".into(),
            ));
            None
        }
    }
}
