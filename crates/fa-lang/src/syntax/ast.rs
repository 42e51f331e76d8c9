//! The syntax tree of a `.fa` file: statements and generic expressions with byte spans.

use crate::ir::Span;

/// A parsed file: its statements in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
    pub span: Span,
}

/// One top-level statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    /// `model NAME`.
    Model(Ident),
    /// `use "path"`; the string's span is the path's.
    Use { path: String, path_span: Span },
    /// `pipeline NAME = expr`.
    Pipeline { name: Ident, value: Expr },
    /// `encoder NAME = expr` and the other roles.
    Module {
        role: Role,
        role_span: Span,
        name: Ident,
        value: Expr,
    },
    /// `sweep NAME = { ... }` or `[ ... ]`.
    Sweep { name: Ident, axis: Expr },
    /// `recipe NAME { ... }`.
    RecipeDef { name: Ident, body: Record },
    /// `recipe NAME`.
    RecipeApply(Ident),
    /// `data { ... }` and the other sections.
    Block { section: Ident, body: Record },
    /// `loss KIND { terms } [combine X]`.
    Loss {
        kind: Expr,
        terms: Vec<Term>,
        combine: Option<Expr>,
    },
    /// `NAME = expr`.
    Binding { name: Ident, value: Expr },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Encoder,
    Projector,
    Predictor,
    Target,
}

impl Role {
    pub fn keyword(self) -> &'static str {
        match self {
            Role::Encoder => "encoder",
            Role::Projector => "projector",
            Role::Predictor => "predictor",
            Role::Target => "target",
        }
    }
}

/// An identifier with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub text: String,
    pub span: Span,
}

/// A loss term `left ~ right`.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub symmetric: bool,
    pub left: Expr,
    pub right: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// Two or more steps joined by `->`.
    Chain(Vec<Expr>),
    /// A number; `text` keeps the spelling for `fmt`.
    Number {
        value: f64,
        text: String,
    },
    /// `value per 256`.
    Per {
        value: Box<Expr>,
        per: Box<Expr>,
    },
    Str(String),
    Bool(bool),
    Name(String),
    /// `$name`.
    Var(String),
    /// `fa METHOD`.
    Fa(Box<Expr>),
    Call {
        name: Ident,
        args: Vec<Arg>,
    },
    Tuple(Vec<Expr>),
    List(Vec<Expr>),
    Record(Record),
}

/// A call argument, positional when `name` is `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub entries: Vec<Entry>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: Ident,
    /// A nested `key { ... }` block is a `Record` value.
    pub value: Expr,
}

impl Expr {
    /// True for numbers written without fraction or exponent.
    pub fn is_integer_literal(&self) -> bool {
        matches!(&self.kind, ExprKind::Number { text, .. } if !text.contains(['.', 'e', 'E']))
    }

    /// A short description of the kind of value, for type errors.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            ExprKind::Chain(_) => "a chain",
            ExprKind::Number { .. } if self.is_integer_literal() => "an integer",
            ExprKind::Number { .. } => "a number",
            ExprKind::Per { .. } => "a per-256 rate",
            ExprKind::Str(_) => "a string",
            ExprKind::Bool(_) => "a boolean",
            ExprKind::Name(_) => "a name",
            ExprKind::Var(_) => "a sweep variable",
            ExprKind::Fa(_) => "a feature augmentation",
            ExprKind::Call { .. } => "a call",
            ExprKind::Tuple(_) => "a tuple",
            ExprKind::List(_) => "a list",
            ExprKind::Record(_) => "a record",
        }
    }

    /// Calls `visit` on this expression and every expression inside it, outermost first.
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&'a Expr)) {
        visit(self);
        match &self.kind {
            ExprKind::Chain(items) | ExprKind::Tuple(items) | ExprKind::List(items) => {
                for item in items {
                    item.walk(visit);
                }
            }
            ExprKind::Per { value, per } => {
                value.walk(visit);
                per.walk(visit);
            }
            ExprKind::Fa(inner) => inner.walk(visit),
            ExprKind::Call { args, .. } => {
                for arg in args {
                    arg.value.walk(visit);
                }
            }
            ExprKind::Record(record) => {
                for entry in &record.entries {
                    entry.value.walk(visit);
                }
            }
            _ => {}
        }
    }

    /// Replaces every sweep variable for which `lookup` has a value, recursively.
    pub fn substitute(&mut self, lookup: &dyn Fn(&str) -> Option<Expr>) {
        self.substitute_at(lookup, 0);
    }

    fn substitute_at(&mut self, lookup: &dyn Fn(&str) -> Option<Expr>, depth: usize) {
        // Sweep values may refer to other sweeps; a value referring to itself stops here.
        const MAX_SUBSTITUTION_DEPTH: usize = 8;
        if let ExprKind::Var(name) = &self.kind {
            if depth < MAX_SUBSTITUTION_DEPTH {
                if let Some(value) = lookup(name) {
                    *self = value;
                    self.substitute_at(lookup, depth + 1);
                }
            }
            return;
        }
        match &mut self.kind {
            ExprKind::Chain(items) | ExprKind::Tuple(items) | ExprKind::List(items) => {
                for item in items.iter_mut() {
                    item.substitute_at(lookup, depth);
                }
                // A chain step that became a chain is spliced in, so chains stay flat.
                if let ExprKind::Chain(items) = &mut self.kind {
                    let mut flat = Vec::with_capacity(items.len());
                    for item in items.drain(..) {
                        match item.kind {
                            ExprKind::Chain(inner) => flat.extend(inner),
                            _ => flat.push(item),
                        }
                    }
                    *items = flat;
                }
            }
            ExprKind::Per { value, per } => {
                value.substitute_at(lookup, depth);
                per.substitute_at(lookup, depth);
            }
            ExprKind::Fa(inner) => inner.substitute_at(lookup, depth),
            ExprKind::Call { args, .. } => {
                for arg in args {
                    arg.value.substitute_at(lookup, depth);
                }
            }
            ExprKind::Record(record) => {
                for entry in &mut record.entries {
                    entry.value.substitute_at(lookup, depth);
                }
            }
            _ => {}
        }
    }
}

impl File {
    /// Every expression of the file, for scans such as "which sweep variables are used".
    pub fn expressions(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        for item in &self.items {
            match &item.kind {
                ItemKind::Pipeline { value, .. }
                | ItemKind::Module { value, .. }
                | ItemKind::Binding { value, .. } => out.push(value),
                ItemKind::Sweep { axis, .. } => out.push(axis),
                ItemKind::Loss {
                    kind,
                    terms,
                    combine,
                } => {
                    out.push(kind);
                    for term in terms {
                        out.push(&term.left);
                        out.push(&term.right);
                    }
                    if let Some(combine) = combine {
                        out.push(combine);
                    }
                }
                ItemKind::RecipeDef { body, .. } | ItemKind::Block { body, .. } => {
                    for entry in &body.entries {
                        out.push(&entry.value);
                    }
                }
                ItemKind::Model(_) | ItemKind::Use { .. } | ItemKind::RecipeApply(_) => {}
            }
        }
        out
    }
}
