//! Modules: a module definition read into its kind (ResNet, convnet, MLP, EMA copy) and role.

use super::Builder;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::*;
use crate::resolve::params::{check_usize, quote_list, type_error, unknown_name, Params, Range};
use crate::resolve::vocabulary::MODULE_KINDS;
use crate::syntax::ast::{Expr, ExprKind, Role};

impl Builder<'_> {
    pub(super) fn module(&mut self, name: &str, diags: &mut Vec<Diagnostic>) -> Option<()> {
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
                    MODULE_KINDS.params(&callee),
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
                let mut p = Params::of_call(
                    "`convnet`",
                    callee_span,
                    args,
                    MODULE_KINDS.params("convnet"),
                    diags,
                );
                let widths = widths(&mut p, "convnet", value.span, diags)?;
                p.finish(diags);
                ModuleKind::ConvNet { widths }
            }
            "mlp" => {
                let mut p = Params::of_call(
                    "`mlp`",
                    callee_span,
                    args,
                    MODULE_KINDS.params("mlp"),
                    diags,
                );
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
                    MODULE_KINDS.params("ema"),
                    diags,
                );
                let chain_expr = p.positional_or("chain");
                let (default_base, default_final) = EMA_MOMENTUM;
                let base_momentum = p.f64("momentum", default_base, Range::closed(0.0, 1.0), diags);
                let final_momentum = p.f64(
                    "final",
                    default_final,
                    Range::closed(base_momentum, 1.0),
                    diags,
                );
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
                    &MODULE_KINDS.names(),
                    || format!("kinds are {}", quote_list(&MODULE_KINDS.names())),
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
