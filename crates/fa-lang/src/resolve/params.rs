//! Typed reading of call arguments and record entries, reporting unknown, duplicate,
//! ill-typed and out-of-range parameters as diagnostics while falling back to defaults.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::Span;
use crate::syntax::ast::{Arg, Expr, ExprKind, Ident, Record};

/// The parameters of one call or record, read one by one with typed getters.
pub struct Params<'a> {
    /// What the parameters belong to, for messages: "`mlp`", "the `data` block".
    what: String,
    pub span: Span,
    positional: Vec<&'a Expr>,
    named: BTreeMap<&'a str, (&'a Ident, &'a Expr)>,
    used: BTreeSet<String>,
    positional_used: usize,
    allowed: &'static [&'static str],
}

/// An inclusive or exclusive numeric range with its text for messages.
#[derive(Clone, Copy)]
pub struct Range {
    pub min: f64,
    pub min_inclusive: bool,
    pub max: f64,
    pub max_inclusive: bool,
}

impl Range {
    pub const ANY: Range = Range {
        min: f64::NEG_INFINITY,
        min_inclusive: true,
        max: f64::INFINITY,
        max_inclusive: true,
    };
    pub const PROBABILITY: Range = Range::closed(0.0, 1.0);
    pub const POSITIVE: Range = Range {
        min: 0.0,
        min_inclusive: false,
        max: f64::INFINITY,
        max_inclusive: true,
    };
    pub const NON_NEGATIVE: Range = Range {
        min: 0.0,
        min_inclusive: true,
        max: f64::INFINITY,
        max_inclusive: true,
    };

    pub const fn closed(min: f64, max: f64) -> Range {
        Range {
            min,
            min_inclusive: true,
            max,
            max_inclusive: true,
        }
    }

    pub fn contains(&self, value: f64) -> bool {
        let above = if self.min_inclusive {
            value >= self.min
        } else {
            value > self.min
        };
        let below = if self.max_inclusive {
            value <= self.max
        } else {
            value < self.max
        };
        above && below && value.is_finite()
    }

    pub fn text(&self) -> String {
        match (self.min.is_finite(), self.max.is_finite()) {
            (true, true) => format!(
                "in {}{}, {}{}",
                if self.min_inclusive { "[" } else { "(" },
                self.min,
                self.max,
                if self.max_inclusive { "]" } else { ")" }
            ),
            (true, false) => format!(
                "{} {}",
                if self.min_inclusive { "≥" } else { ">" },
                self.min
            ),
            (false, true) => format!(
                "{} {}",
                if self.max_inclusive { "≤" } else { "<" },
                self.max
            ),
            (false, false) => "finite".into(),
        }
    }
}

/// A constructor written as a bare name (`flip`) or a call (`blur(p: 0.1)`): its name, its
/// arguments (none for a bare name) and the span of the name. Anything else is a type error
/// saying what was `expected`.
pub fn callee<'a>(
    expr: &'a Expr,
    expected: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(&'a str, &'a [Arg], Span)> {
    match &expr.kind {
        ExprKind::Name(name) => Some((name.as_str(), &[][..], expr.span)),
        ExprKind::Call { name, args } => Some((name.text.as_str(), args.as_slice(), name.span)),
        _ => {
            diags.push(type_error(expr, expected));
            None
        }
    }
}

/// An unknown `name` where one of `known` was expected: an error whose help suggests the
/// closest known name, or else says `otherwise` (usually the list of known names).
pub fn unknown_name(
    code: &'static str,
    span: Span,
    (message, label): (String, &str),
    name: &str,
    known: &[&str],
    otherwise: impl FnOnce() -> String,
) -> Diagnostic {
    let help = did_you_mean(name, known.iter().copied()).unwrap_or_else(otherwise);
    Diagnostic::error(code, span, message, label).with_help(help)
}

pub fn type_error(expr: &Expr, expected: &str) -> Diagnostic {
    Diagnostic::error(
        "fa::resolve::type",
        expr.span,
        format!("expected {expected}, found {}", expr.describe()),
        format!("expected {expected}"),
    )
}

pub fn range_error(
    expr: &Expr,
    name: &str,
    value: f64,
    range: Range,
    why: Option<&str>,
) -> Diagnostic {
    let mut diagnostic = Diagnostic::error(
        "fa::resolve::range",
        expr.span,
        format!("`{name}` must be {}, found {value}", range.text()),
        format!("out of range ({})", range.text()),
    );
    if let Some(why) = why {
        diagnostic = diagnostic.with_help(why.to_string());
    }
    diagnostic
}

/// Reads a number from `expr` (any numeric literal).
pub fn number(expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    match &expr.kind {
        ExprKind::Number { value, .. } => Some(*value),
        _ => {
            diags.push(type_error(expr, "a number"));
            None
        }
    }
}

/// Reads a non-negative integer from `expr`.
pub fn integer(expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<usize> {
    match &expr.kind {
        ExprKind::Number { value, .. }
            if expr.is_integer_literal() && *value >= 0.0 && *value <= u32::MAX as f64 * 1024.0 =>
        {
            Some(*value as usize)
        }
        ExprKind::Number { .. } if expr.is_integer_literal() => {
            diags.push(Diagnostic::error(
                "fa::resolve::range",
                expr.span,
                "the integer is out of range",
                "out of range",
            ));
            None
        }
        _ => {
            diags.push(type_error(expr, "an integer"));
            None
        }
    }
}

impl<'a> Params<'a> {
    /// Parameters of a call expression's arguments.
    pub fn of_call(
        what: impl Into<String>,
        span: Span,
        args: &'a [crate::syntax::ast::Arg],
        allowed: &'static [&'static str],
        diags: &mut Vec<Diagnostic>,
    ) -> Params<'a> {
        let mut params = Params::empty(what, span, allowed);
        for arg in args {
            match &arg.name {
                None => params.positional.push(&arg.value),
                Some(name) => params.insert(name, &arg.value, diags),
            }
        }
        params
    }

    /// Parameters of a record's entries.
    pub fn of_record(
        what: impl Into<String>,
        record: &'a Record,
        allowed: &'static [&'static str],
        diags: &mut Vec<Diagnostic>,
    ) -> Params<'a> {
        let mut params = Params::empty(what, record.span, allowed);
        for entry in &record.entries {
            params.insert(&entry.key, &entry.value, diags);
        }
        params
    }

    pub fn empty(
        what: impl Into<String>,
        span: Span,
        allowed: &'static [&'static str],
    ) -> Params<'a> {
        Params {
            what: what.into(),
            span,
            positional: Vec::new(),
            named: BTreeMap::new(),
            used: BTreeSet::new(),
            positional_used: 0,
            allowed,
        }
    }

    fn insert(&mut self, name: &'a Ident, value: &'a Expr, diags: &mut Vec<Diagnostic>) {
        if let Some((first, _)) = self.named.get(name.text.as_str()) {
            diags.push(
                Diagnostic::error(
                    "fa::resolve::duplicate_param",
                    name.span,
                    format!("`{}` is given twice", name.text),
                    "given again here",
                )
                .with_related(first.span, "first given here")
                .with_help("remove one of them"),
            );
            return;
        }
        self.named.insert(&name.text, (name, value));
    }

    /// The raw expression of a named parameter, marking it used.
    pub fn get(&mut self, name: &str) -> Option<&'a Expr> {
        self.used.insert(name.to_string());
        self.named.get(name).map(|(_, expr)| *expr)
    }

    /// The positional arguments not yet taken.
    pub fn take_positional(&mut self) -> Vec<&'a Expr> {
        let rest = self.positional[self.positional_used..].to_vec();
        self.positional_used = self.positional.len();
        rest
    }

    /// The next positional argument, or the named parameter `name`.
    pub fn positional_or(&mut self, name: &str) -> Option<&'a Expr> {
        if let Some(expr) = self.get(name) {
            return Some(expr);
        }
        if self.positional_used < self.positional.len() {
            self.positional_used += 1;
            return Some(self.positional[self.positional_used - 1]);
        }
        None
    }

    pub fn f64(
        &mut self,
        name: &str,
        default: f64,
        range: Range,
        diags: &mut Vec<Diagnostic>,
    ) -> f64 {
        let Some(expr) = self.get(name) else {
            return default;
        };
        match number(expr, diags) {
            Some(value) if range.contains(value) => value,
            Some(value) => {
                diags.push(range_error(expr, name, value, range, None));
                default
            }
            None => default,
        }
    }

    pub fn usize(
        &mut self,
        name: &str,
        default: usize,
        min: usize,
        diags: &mut Vec<Diagnostic>,
    ) -> usize {
        let Some(expr) = self.get(name) else {
            return default;
        };
        check_usize(expr, name, min, diags).unwrap_or(default)
    }

    /// An optional integer: absent or `none` give `default`.
    pub fn opt_usize(
        &mut self,
        name: &str,
        default: Option<usize>,
        min: usize,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<usize> {
        let Some(expr) = self.get(name) else {
            return default;
        };
        if matches!(&expr.kind, ExprKind::Name(n) if n == "none") {
            return None;
        }
        check_usize(expr, name, min, diags).or(default)
    }

    pub fn bool(&mut self, name: &str, default: bool, diags: &mut Vec<Diagnostic>) -> bool {
        let Some(expr) = self.get(name) else {
            return default;
        };
        match &expr.kind {
            ExprKind::Bool(value) => *value,
            _ => {
                diags.push(type_error(expr, "`true` or `false`"));
                default
            }
        }
    }

    pub fn string(&mut self, name: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
        let expr = self.get(name)?;
        match &expr.kind {
            ExprKind::Str(value) => Some(value.clone()),
            _ => {
                diags.push(type_error(expr, "a string"));
                None
            }
        }
    }

    /// One of a fixed set of names.
    pub fn choice<T: Copy>(
        &mut self,
        name: &str,
        default: T,
        options: &[(&str, T)],
        diags: &mut Vec<Diagnostic>,
    ) -> T {
        let Some(expr) = self.get(name) else {
            return default;
        };
        choice(expr, name, options, diags).unwrap_or(default)
    }

    /// A pair `(a, b)` of numbers in `range` with `a ≤ b`.
    pub fn pair(
        &mut self,
        name: &str,
        default: (f64, f64),
        range: Range,
        diags: &mut Vec<Diagnostic>,
    ) -> (f64, f64) {
        let Some(expr) = self.get(name) else {
            return default;
        };
        let ExprKind::Tuple(items) = &expr.kind else {
            diags.push(type_error(expr, "a pair `(low, high)`"));
            return default;
        };
        if items.len() != 2 {
            diags.push(type_error(expr, "a pair `(low, high)`"));
            return default;
        }
        let (Some(low), Some(high)) = (number(&items[0], diags), number(&items[1], diags)) else {
            return default;
        };
        for (item, value) in [(&items[0], low), (&items[1], high)] {
            if !range.contains(value) {
                diags.push(range_error(item, name, value, range, None));
                return default;
            }
        }
        if low > high {
            diags.push(
                Diagnostic::error(
                    "fa::resolve::range",
                    expr.span,
                    format!("`{name}` must have low ≤ high, found ({low}, {high})"),
                    "low is above high",
                )
                .with_help("write the smaller bound first"),
            );
            return default;
        }
        (low, high)
    }

    /// Reports unknown named parameters and unused positional ones.
    pub fn finish(self, diags: &mut Vec<Diagnostic>) {
        for (name, (ident, _)) in &self.named {
            if !self.used.contains(*name) {
                let mut diagnostic = Diagnostic::error(
                    "fa::resolve::unknown_param",
                    ident.span,
                    format!("{} has no parameter `{name}`", self.what),
                    "unknown parameter",
                );
                diagnostic = match did_you_mean(name, self.allowed.iter().copied()) {
                    Some(help) => diagnostic.with_help(help),
                    None if self.allowed.is_empty() => {
                        diagnostic.with_help(format!("{} takes no parameters", self.what))
                    }
                    None => diagnostic
                        .with_help(format!("its parameters are {}", quote_list(self.allowed))),
                };
                diags.push(diagnostic);
            }
        }
        if self.positional_used < self.positional.len() {
            let extra = self.positional[self.positional_used];
            diags.push(
                Diagnostic::error(
                    "fa::resolve::too_many_args",
                    extra.span,
                    format!("{} takes no more positional arguments", self.what),
                    "unexpected argument",
                )
                .with_help(format!(
                    "name the argument: one of {}",
                    quote_list(self.allowed)
                )),
            );
        }
    }
}

pub fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upper limits on the integers that size memory or work: far above any published recipe,
/// low enough that a typo fails in `fa check` rather than in an allocation during training.
pub const CAPS: &[(&str, usize, &str)] = &[
    ("bank", 1 << 24, "a bank is held in memory; 16,777,216 entries is 64 MiB per feature dimension"),
    ("k", 1024, "each sample (or neighbour) is a copy of the batch's features; the paper draws at most a few"),
    ("width", 1 << 16, "a layer's width is capped at 65,536"),
    ("image_size", 4096, "images are decoded and augmented at this size"),
    ("size", 4096, "a crop is capped at 4,096 pixels"),
    ("batch", 1 << 20, "a batch is held in memory at once"),
    ("accumulate", 1 << 16, "gradients are accumulated over at most 65,536 batches"),
    ("epochs", 1 << 20, "at most 1,048,576 epochs"),
];

pub fn check_usize(
    expr: &Expr,
    name: &str,
    min: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let value = integer(expr, diags)?;
    if let Some(&(_, max, why)) = CAPS.iter().find(|(cap, _, _)| *cap == name) {
        if value > max {
            diags.push(range_error(
                expr,
                name,
                value as f64,
                Range::closed(min as f64, max as f64),
                Some(why),
            ));
            return None;
        }
    }
    if value < min {
        diags.push(range_error(
            expr,
            name,
            value as f64,
            Range {
                min: min as f64,
                min_inclusive: true,
                max: f64::INFINITY,
                max_inclusive: true,
            },
            None,
        ));
        return None;
    }
    Some(value)
}

/// Reads one of a fixed set of names from `expr`.
pub fn choice<T: Copy>(
    expr: &Expr,
    name: &str,
    options: &[(&str, T)],
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    let ExprKind::Name(text) = &expr.kind else {
        diags.push(type_error(expr, &format!("one of {}", quote_list(&names))));
        return None;
    };
    if let Some((_, value)) = options.iter().find(|(n, _)| n == text) {
        return Some(*value);
    }
    diags.push(unknown_name(
        "fa::resolve::unknown_choice",
        expr.span,
        (format!("`{text}` is not a valid `{name}`"), "unknown value"),
        text,
        &names,
        || format!("expected one of {}", quote_list(&names)),
    ));
    None
}
