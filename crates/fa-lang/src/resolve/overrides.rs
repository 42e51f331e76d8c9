//! Overrides: `--set key=value` arguments, read and applied to the program like a block
//! written at the end of the file.

use super::program::{ConfigSource, Program};
use super::vocabulary::{known_keys, MODULE_KINDS, SECTIONS};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::Span;
use crate::syntax::ast::{Arg, Entry, Expr, ExprKind, Ident, Record};
use crate::syntax::{self, SourceMap};

/// A `--set key=value` override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub key: String,
    pub value: String,
}

/// Why a `--set` argument could not be read (a usage error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("override `{0}` has no `=`; write it as key=value")]
    MissingEquals(String),
    #[error("override `{0}` has an empty key")]
    EmptyKey(String),
    #[error("override `{0}` has an empty value")]
    EmptyValue(String),
}

impl std::str::FromStr for Override {
    type Err = OverrideError;

    fn from_str(text: &str) -> Result<Override, OverrideError> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(OverrideError::MissingEquals(text.to_string()));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(OverrideError::EmptyKey(text.to_string()));
        }
        if value.is_empty() {
            return Err(OverrideError::EmptyValue(text.to_string()));
        }
        Ok(Override {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

impl Program {
    /// Applies `--set` overrides to the program. Sweep-axis overrides are returned, to be
    /// applied at expansion.
    pub fn apply_overrides(
        &mut self,
        overrides: &[Override],
        sources: &mut SourceMap,
        diags: &mut Vec<Diagnostic>,
    ) -> Vec<(String, Expr, String)> {
        let mut axis_overrides = Vec::new();
        for item in overrides {
            let text = format!("{}={}", item.key, item.value);
            let file = sources.add(format!("--set {text}"), None, text.clone());
            let key_span = Span::new(file, 0, item.key.len());
            let offset = item.key.len() + 1;
            let value = match syntax::parse_expr(file, &item.value) {
                Ok(mut value) => {
                    shift(&mut value, offset);
                    value
                }
                Err(problems) => {
                    for mut problem in problems {
                        problem.span.start += offset;
                        problem.span.end += offset;
                        diags.push(problem);
                    }
                    continue;
                }
            };
            let parts: Vec<&str> = item.key.split('.').collect();
            if parts.len() == 1 && self.sweeps.iter().any(|s| s.name.text == parts[0]) {
                axis_overrides.push((parts[0].to_string(), value, item.value.clone()));
                continue;
            }
            if parts.len() >= 2 && SECTIONS.contains(parts[0]) {
                if !known_keys().contains(&item.key) {
                    diags.push(self.unknown_key(&item.key, key_span));
                    continue;
                }
                let body = nest(&parts[1..], value, key_span);
                self.config.push(ConfigSource::Block {
                    section: Ident {
                        text: parts[0].to_string(),
                        span: key_span,
                    },
                    body,
                });
                continue;
            }
            if parts.len() == 2 && parts[0] == "loss" {
                if parts[1] == "combine" {
                    for loss in &mut self.losses {
                        loss.combine = Some(value.clone());
                    }
                    if !self.losses.is_empty() {
                        continue;
                    }
                } else {
                    let mut applied = false;
                    for loss in &mut self.losses {
                        applied |= set_call_arg(&mut loss.kind, parts[1], &value);
                    }
                    if applied {
                        continue;
                    }
                }
            }
            if parts.len() == 2 {
                if let Some(def) = self.modules.get_mut(parts[0]) {
                    if set_call_arg(&mut def.value.1, parts[1], &value) {
                        continue;
                    }
                }
            }
            diags.push(self.unknown_key(&item.key, key_span));
        }
        axis_overrides
    }

    fn unknown_key(&self, key: &str, span: Span) -> Diagnostic {
        let mut candidates: Vec<String> = known_keys();
        candidates.extend(self.sweeps.iter().map(|s| s.name.text.clone()));
        candidates.push("loss.combine".into());
        candidates.push("loss.tau".into());
        for (name, def) in &self.modules {
            if let ExprKind::Call { name: callee, .. } = &def.value.1.kind {
                if let Some(kind) = MODULE_KINDS.get(&callee.text) {
                    candidates.extend(kind.settings().map(|param| format!("{name}.{param}")));
                }
            }
        }
        let diagnostic = Diagnostic::error(
            "fa::resolve::unknown_key",
            span,
            format!("unknown override key `{key}`"),
            "no such setting",
        );
        match did_you_mean(key, candidates.iter().map(String::as_str)) {
            Some(help) => diagnostic.with_help(help),
            None => diagnostic.with_help("keys are `section.name` (e.g. `optim.lr`), `module.param`, `loss.combine` or a sweep name"),
        }
    }
}

/// Builds `{ a { b: value } }` from the dotted path `a.b`, so an override merges like a block.
fn nest(parts: &[&str], value: Expr, span: Span) -> Record {
    let key = Ident {
        text: parts[0].to_string(),
        span,
    };
    let value = if parts.len() == 1 {
        value
    } else {
        Expr {
            kind: ExprKind::Record(nest(&parts[1..], value, span)),
            span,
        }
    };
    Record {
        entries: vec![Entry { key, value }],
        span,
    }
}

/// Sets the named argument `param` of a call expression (adding it when absent).
fn set_call_arg(expr: &mut Expr, param: &str, value: &Expr) -> bool {
    let span = value.span;
    match &mut expr.kind {
        ExprKind::Call { args, .. } => {
            if let Some(arg) = args
                .iter_mut()
                .find(|a| a.name.as_ref().is_some_and(|n| n.text == param))
            {
                arg.value = value.clone();
            } else {
                args.push(Arg {
                    name: Some(Ident {
                        text: param.to_string(),
                        span,
                    }),
                    value: value.clone(),
                });
            }
            true
        }
        ExprKind::Name(name) if param == "tau" && name == "infonce" => {
            let callee = Ident {
                text: name.clone(),
                span: expr.span,
            };
            expr.kind = ExprKind::Call {
                name: callee,
                args: vec![Arg {
                    name: Some(Ident {
                        text: param.to_string(),
                        span,
                    }),
                    value: value.clone(),
                }],
            };
            true
        }
        _ => false,
    }
}

/// Moves every span of `expr` by `offset` bytes (override values are parsed on their own).
fn shift(expr: &mut Expr, offset: usize) {
    fn span(span: &mut Span, offset: usize) {
        span.start += offset;
        span.end += offset;
    }
    span(&mut expr.span, offset);
    match &mut expr.kind {
        ExprKind::Chain(items) | ExprKind::Tuple(items) | ExprKind::List(items) => {
            items.iter_mut().for_each(|e| shift(e, offset))
        }
        ExprKind::Per { value, per } => {
            shift(value, offset);
            shift(per, offset);
        }
        ExprKind::Fa(inner) => shift(inner, offset),
        ExprKind::Call { name, args } => {
            span(&mut name.span, offset);
            for arg in args {
                if let Some(name) = &mut arg.name {
                    span(&mut name.span, offset);
                }
                shift(&mut arg.value, offset);
            }
        }
        ExprKind::Record(record) => {
            span(&mut record.span, offset);
            for entry in &mut record.entries {
                span(&mut entry.key.span, offset);
                shift(&mut entry.value, offset);
            }
        }
        _ => {}
    }
}
