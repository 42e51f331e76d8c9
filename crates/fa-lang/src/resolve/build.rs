//! Building one sweep cell's `ir::Model`: modules, pipelines, the dataflow graph and the
//! loss terms, with `fa none` as the identity and duplicate terms dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::config;
use super::params::{callee, check_usize, type_error, unknown_name, Params, Range};
use super::Program;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::*;
use crate::syntax::ast::{Expr, ExprKind, Role};
use crate::syntax::SourceMap;

/// Names with a meaning in chains, which definitions cannot take.
pub const RESERVED: &[&str] = &["stopgrad", "view", "none"];

const AUG_OPS: &[&str] = &[
    "crop",
    "flip",
    "jitter",
    "grayscale",
    "blur",
    "solarize",
    "normalize",
];
const FA_METHODS: &[&str] = &["none", "nn", "mask", "mixup"];
const MODULE_KINDS: &[&str] = &["resnet18", "resnet34", "resnet50", "convnet", "mlp", "ema"];

/// The parameters a module constructor accepts (for `--set module.param` suggestions).
pub fn module_params(kind: &str) -> &'static [&'static str] {
    match kind {
        "resnet18" | "resnet34" | "resnet50" => &["stem"],
        "mlp" => &["norm", "last_norm"],
        "ema" => &["momentum", "final"],
        _ => &[],
    }
}

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
    for section in sections.keys() {
        if !config::SECTIONS.contains(&section.as_str()) {
            // The grammar admits only the four section keywords; overrides are checked too.
            continue;
        }
    }
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
            let mut p = Params::of_call("`infonce`", span, args, &["tau"], diags);
            let tau = p
                .positional_or("tau")
                .map(|e| (e, super::params::number(e, diags)));
            let tau = match tau {
                None => 0.2,
                Some((_, None)) => 0.2,
                Some((e, Some(v))) if !Range::POSITIVE.contains(v) => {
                    diags.push(super::params::range_error(
                        e,
                        "tau",
                        v,
                        Range::POSITIVE,
                        Some("the temperature divides the similarities"),
                    ));
                    0.2
                }
                Some((_, Some(v))) => v,
            };
            p.finish(diags);
            Some(LossKind::InfoNce { tau })
        }
        "byol" => {
            Params::of_call("`byol`", span, args, &[], diags).finish(diags);
            Some(LossKind::Byol)
        }
        other => {
            diags.push(unknown_name(
                "fa::resolve::unknown_loss",
                span,
                (format!("unknown loss `{other}`"), "unknown loss"),
                other,
                &["infonce", "byol"],
                || "losses are `infonce(tau: ...)` and `byol`".into(),
            ));
            None
        }
    }
}

impl Builder<'_> {
    /// A loss side: the name of a value.
    fn side(&mut self, expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<(NodeId, bool)> {
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

    fn unknown_value(&self, name: &str, span: Span) -> Diagnostic {
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
    fn binding(
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

    fn chain(
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
                ExprKind::Call { name: callee, .. }
                    if FA_METHODS.contains(&callee.text.as_str()) =>
                {
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
    fn shared_node(
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

    fn view_pipeline(
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

    fn pipeline(
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
                    if !AUG_OPS.contains(&other.as_str())
                        && other != "greyscale"
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

    fn module(&mut self, name: &str, diags: &mut Vec<Diagnostic>) -> Option<()> {
        self.used_names.insert(name.to_string());
        if self.modules.contains_key(name) {
            return Some(());
        }
        let def = self.program.modules.get(name)?;
        let (role, value) = def.value.clone();
        let span = def.name.span;
        let role_ir = match role {
            Role::Encoder => ModuleRole::Encoder,
            Role::Projector => ModuleRole::Projector,
            Role::Predictor => ModuleRole::Predictor,
            Role::Target => ModuleRole::Target,
        };
        let (callee, callee_span, args) = match &value.kind {
            ExprKind::Call { name, args } => (name.text.clone(), name.span, args.as_slice()),
            ExprKind::Name(kind) => (kind.clone(), value.span, &[][..]),
            _ => {
                diags.push(type_error(
                    &value,
                    "a module constructor such as `mlp(2048, 256)`",
                ));
                return None;
            }
        };
        let kind = match callee.as_str() {
            "resnet18" | "resnet34" | "resnet50" => {
                let depth = callee[6..].parse().expect("resnet depth");
                let mut p = Params::of_call(
                    format!("`{callee}`"),
                    callee_span,
                    args,
                    module_params(&callee),
                    diags,
                );
                let default_stem = if self.data.image_size <= 64 {
                    Stem::Cifar
                } else {
                    Stem::Imagenet
                };
                let stem = p.choice(
                    "stem",
                    default_stem,
                    &[("imagenet", Stem::Imagenet), ("cifar", Stem::Cifar)],
                    diags,
                );
                p.finish(diags);
                ModuleKind::ResNet { depth, stem }
            }
            "convnet" => {
                let mut p = Params::of_call("`convnet`", callee_span, args, &[], diags);
                let widths = widths(&mut p, "convnet", value.span, diags)?;
                p.finish(diags);
                ModuleKind::ConvNet { widths }
            }
            "mlp" => {
                let mut p =
                    Params::of_call("`mlp`", callee_span, args, module_params("mlp"), diags);
                let widths = widths(&mut p, "mlp", value.span, diags);
                let norm = p.choice(
                    "norm",
                    Norm::Batch,
                    &[("batch", Norm::Batch), ("none", Norm::None)],
                    diags,
                );
                // The paper's projector keeps batch norm on its last layer; its predictor does not.
                let default_last = role == Role::Projector && norm == Norm::Batch;
                let last_norm = p.bool("last_norm", default_last, diags);
                p.finish(diags);
                ModuleKind::Mlp {
                    widths: widths?,
                    norm,
                    last_norm,
                }
            }
            "ema" => {
                let mut p = Params::of_call(
                    "`ema`",
                    callee_span,
                    args,
                    &["chain", "momentum", "final"],
                    diags,
                );
                let chain_expr = p.positional_or("chain");
                let base_momentum = p.f64("momentum", 0.99, Range::closed(0.0, 1.0), diags);
                let final_momentum = p.f64("final", 1.0, Range::closed(base_momentum, 1.0), diags);
                p.finish(diags);
                let Some(chain_expr) = chain_expr else {
                    diags.push(
                        Diagnostic::error(
                            "fa::resolve::missing_param",
                            value.span,
                            "`ema` needs the chain of modules it copies",
                            "no chain",
                        )
                        .with_help("write `ema(f -> g, momentum: 0.99)`"),
                    );
                    return None;
                };
                let steps: Vec<&Expr> = match &chain_expr.kind {
                    ExprKind::Chain(steps) => steps.iter().collect(),
                    _ => vec![chain_expr],
                };
                let mut chain = Vec::new();
                for step in steps {
                    let ExprKind::Name(member) = &step.kind else {
                        diags.push(type_error(step, "a module name"));
                        return None;
                    };
                    match self.program.modules.get(member) {
                        Some(member_def) if member_def.value.0 == Role::Target => {
                            diags.push(
                                Diagnostic::error(
                                    "fa::resolve::ema_chain",
                                    step.span,
                                    "an EMA target cannot copy another target",
                                    "a target",
                                )
                                .with_related(member_def.name.span, "defined as a target here"),
                            );
                            return None;
                        }
                        Some(_) => {
                            self.module(member, diags)?;
                            chain.push(member.clone());
                        }
                        None => {
                            let diagnostic = Diagnostic::error(
                                "fa::resolve::unknown_module",
                                step.span,
                                format!("no module named `{member}`"),
                                "not defined",
                            );
                            let help = did_you_mean(member, self.program.modules.keys().map(String::as_str))
                                .unwrap_or_else(|| "an EMA target copies modules defined with `encoder`, `projector` or `predictor`".into());
                            diags.push(diagnostic.with_help(help));
                            return None;
                        }
                    }
                }
                ModuleKind::Ema {
                    chain,
                    base_momentum,
                    final_momentum,
                }
            }
            other => {
                diags.push(unknown_name(
                    "fa::resolve::unknown_module_kind",
                    callee_span,
                    (format!("unknown module kind `{other}`"), "unknown kind"),
                    other,
                    MODULE_KINDS,
                    || format!("kinds are {}", super::params::quote_list(MODULE_KINDS)),
                ));
                return None;
            }
        };
        let is_ema = matches!(kind, ModuleKind::Ema { .. });
        if is_ema != (role == Role::Target) {
            let message = if is_ema {
                "an `ema` copy must be declared as a `target`"
            } else {
                "a `target` must be an `ema(...)` copy"
            };
            diags.push(
                Diagnostic::error(
                    "fa::resolve::role",
                    value.span,
                    message,
                    "role and kind disagree",
                )
                .with_help("write `target t = ema(f -> g, momentum: 0.99)`"),
            );
            return None;
        }
        self.modules.insert(
            name.to_string(),
            ModuleDef {
                name: name.to_string(),
                role: role_ir,
                kind,
                span,
            },
        );
        let _ = self.main_file;
        Some(())
    }
}

fn widths(
    p: &mut Params<'_>,
    what: &str,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<usize>> {
    let items = p.take_positional();
    if items.is_empty() {
        diags.push(
            Diagnostic::error(
                "fa::resolve::missing_param",
                span,
                format!("`{what}` needs at least one layer width"),
                "no widths",
            )
            .with_help(format!("write `{what}(2048, 256)`")),
        );
        return None;
    }
    let mut out = Vec::new();
    for item in items {
        out.push(check_usize(item, "width", 1, diags)?);
    }
    Some(out)
}

/// A feature-augmentation method: `None` on error, `Some(None)` for `fa none`.
fn fa_method(expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Option<FeatureAug>> {
    let (name, args, span) = callee(
        expr,
        "a feature augmentation (`none`, `nn`, `mask`, `mixup`)",
        diags,
    )?;
    let method = match name {
        "none" => {
            Params::of_call("`none`", span, args, &[], diags).finish(diags);
            return Some(None);
        }
        "nn" => {
            let mut p = Params::of_call(
                "`nn`",
                span,
                args,
                &["bank", "k", "grad", "exclude_self"],
                diags,
            );
            let bank = bank(&mut p, diags);
            let k = p.usize("k", 1, 1, diags);
            p.finish(diags);
            return Some(Some(FeatureAug {
                method: FaMethod::Nn(bank),
                k,
            }));
        }
        "mask" => {
            let mut p = Params::of_call("`mask`", span, args, &["rate", "k"], diags);
            let rate = match p.positional_or("rate") {
                None => 0.2,
                Some(e) => match super::params::number(e, diags) {
                    Some(v) if (0.0..1.0).contains(&v) => v,
                    Some(v) => {
                        let range = Range {
                            min: 0.0,
                            min_inclusive: true,
                            max: 1.0,
                            max_inclusive: false,
                        };
                        diags.push(super::params::range_error(
                            e,
                            "rate",
                            v,
                            range,
                            Some("the rate is the fraction of components set to zero"),
                        ));
                        0.2
                    }
                    None => 0.2,
                },
            };
            let k = p.usize("k", 1, 1, diags);
            p.finish(diags);
            FeatureAug {
                method: FaMethod::Mask { rate },
                k,
            }
        }
        "mixup" => {
            let mut p = Params::of_call("`mixup`", span, args, &["alpha", "noise", "k"], diags);
            let alpha = p.f64(
                "alpha",
                0.85,
                Range {
                    min: 0.0,
                    min_inclusive: false,
                    max: 1.0,
                    max_inclusive: true,
                },
                diags,
            );
            let noise = match p.get("noise") {
                Some(expr) => mixup_noise(expr, diags)?,
                None => {
                    diags.push(
                        Diagnostic::error("fa::resolve::missing_param", expr.span, "`mixup` needs a `noise`", "no noise given")
                            .with_help("write `noise: nn(bank: 65536)`, `noise: batch` or `noise: gaussian(sigma: 0.2)`"),
                    );
                    return None;
                }
            };
            let k = p.usize("k", 1, 1, diags);
            p.finish(diags);
            FeatureAug {
                method: FaMethod::Mixup { alpha, noise },
                k,
            }
        }
        other => {
            diags.push(unknown_name(
                "fa::resolve::unknown_fa",
                span,
                (
                    format!("unknown feature augmentation `{other}`"),
                    "unknown method",
                ),
                other,
                FA_METHODS,
                || format!("methods are {}", super::params::quote_list(FA_METHODS)),
            ));
            return None;
        }
    };
    Some(Some(method))
}

fn bank(p: &mut Params<'_>, diags: &mut Vec<Diagnostic>) -> BankConfig {
    let size = p.usize("bank", 65_536, 1, diags);
    let grad = p.choice(
        "grad",
        NnGrad::None,
        &[
            ("none", NnGrad::None),
            ("straight", NnGrad::StraightThrough),
        ],
        diags,
    );
    let exclude_self = p.bool("exclude_self", false, diags);
    BankConfig {
        size,
        grad,
        exclude_self,
    }
}

fn mixup_noise(expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<MixupNoise> {
    let (name, args, span) = callee(expr, "a noise (`nn(...)`, `batch`, `gaussian(...)`)", diags)?;
    match name {
        "nn" => {
            let mut p = Params::of_call(
                "`nn` noise",
                span,
                args,
                &["bank", "grad", "exclude_self"],
                diags,
            );
            let bank = bank(&mut p, diags);
            p.finish(diags);
            Some(MixupNoise::Nn(bank))
        }
        "batch" => {
            Params::of_call("`batch` noise", span, args, &[], diags).finish(diags);
            Some(MixupNoise::Batch)
        }
        "gaussian" => {
            let mut p = Params::of_call("`gaussian` noise", span, args, &["sigma"], diags);
            let sigma = p.f64("sigma", 0.2, Range::POSITIVE, diags);
            p.finish(diags);
            Some(MixupNoise::Gaussian { sigma })
        }
        other => {
            diags.push(unknown_name(
                "fa::resolve::unknown_choice",
                span,
                (format!("unknown mixup noise `{other}`"), "unknown noise"),
                other,
                &["nn", "batch", "gaussian"],
                || "noises are `nn(...)`, `batch`, `gaussian(sigma: ...)`".into(),
            ));
            None
        }
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
            let mut p = Params::of_call(
                "`crop`",
                span,
                args,
                &["size", "scale", "ratio", "interpolation"],
                diags,
            );
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
            let mut p = Params::of_call("`flip`", span, args, &["p"], diags);
            let probability = p.f64("p", 0.5, Range::PROBABILITY, diags);
            p.finish(diags);
            AugOp::HorizontalFlip { p: probability }
        }
        "jitter" => {
            let mut p = Params::of_call(
                "`jitter`",
                span,
                args,
                &["brightness", "contrast", "saturation", "hue", "p"],
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
            let mut p = Params::of_call("`grayscale`", span, args, &["p"], diags);
            let probability = p.f64("p", 0.2, Range::PROBABILITY, diags);
            p.finish(diags);
            AugOp::Grayscale { p: probability }
        }
        "blur" => {
            let mut p = Params::of_call("`blur`", span, args, &["p", "sigma"], diags);
            let probability = p.f64("p", 0.5, Range::PROBABILITY, diags);
            let sigma = p.pair("sigma", (0.1, 2.0), Range::POSITIVE, diags);
            p.finish(diags);
            AugOp::GaussianBlur {
                p: probability,
                sigma,
            }
        }
        "solarize" => {
            let mut p = Params::of_call("`solarize`", span, args, &["p", "threshold"], diags);
            let probability = p.f64("p", 0.2, Range::PROBABILITY, diags);
            let threshold = p.f64("threshold", 0.5, Range::PROBABILITY, diags);
            p.finish(diags);
            AugOp::Solarize {
                p: probability,
                threshold,
            }
        }
        "normalize" => {
            let mut p = Params::of_call("`normalize`", span, args, &["mean", "std"], diags);
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
                AUG_OPS,
                || format!("augmentations are {}", super::params::quote_list(AUG_OPS)),
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
        let value = super::params::number(item, diags)?;
        if !range.contains(value) {
            diags.push(super::params::range_error(item, name, value, range, None));
            return None;
        }
        out.push(value);
    }
    Some(out)
}
