//! The program: every definition of the main file and the files it uses, collected into
//! one namespace with duplicates reported.

use std::collections::BTreeMap;

use super::vocabulary::RESERVED;
use crate::diag::Diagnostic;
use crate::ir::{self, Span};
use crate::syntax::ast::{Expr, Ident, Item, ItemKind, Record, Role, Term};

/// A definition together with where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Def<T> {
    pub name: Ident,
    pub value: T,
    /// Defined in the main file (unused main-file definitions are reported).
    pub main: bool,
}

/// A configuration source, in statement order.
#[derive(Clone, Debug)]
pub(crate) enum ConfigSource {
    Block { section: Ident, body: Record },
    Recipe(Ident),
}

#[derive(Clone, Debug)]
pub(crate) struct LossDecl {
    pub kind: Expr,
    pub terms: Vec<Term>,
    pub combine: Option<Expr>,
}

/// Every definition of the main file and the files it uses.
#[derive(Clone, Debug, Default)]
pub(crate) struct Program {
    pub model_name: Option<Ident>,
    pub pipelines: BTreeMap<String, Def<Expr>>,
    pub modules: BTreeMap<String, Def<(Role, Expr)>>,
    pub bindings: BTreeMap<String, Def<Expr>>,
    /// Binding names in statement order.
    pub binding_order: Vec<String>,
    pub sweeps: Vec<Def<Expr>>,
    pub recipes: BTreeMap<String, Def<Record>>,
    pub config: Vec<ConfigSource>,
    pub losses: Vec<LossDecl>,
}

impl Program {
    pub fn collect(&mut self, items: &[Item], main_file: ir::FileId, diags: &mut Vec<Diagnostic>) {
        // Pipelines, modules and values share one namespace: a chain step names either.
        let mut names: BTreeMap<String, Span> = BTreeMap::new();
        let mut claim = |name: &Ident, diags: &mut Vec<Diagnostic>| -> bool {
            if let Some(first) = names.get(&name.text) {
                diags.push(
                    Diagnostic::error(
                        "fa::resolve::duplicate",
                        name.span,
                        format!("`{}` is defined twice", name.text),
                        "defined again here",
                    )
                    .with_related(*first, "first defined here")
                    .with_help(
                        "rename one of them; using a module name twice already shares its weights",
                    ),
                );
                return false;
            }
            if RESERVED.contains(&name.text.as_str()) {
                diags.push(
                    Diagnostic::error(
                        "fa::resolve::reserved_name",
                        name.span,
                        format!("`{}` is a reserved word", name.text),
                        "reserved",
                    )
                    .with_help("choose another name"),
                );
                return false;
            }
            names.insert(name.text.clone(), name.span);
            true
        };
        for item in items {
            let main = item.span.file == main_file;
            match &item.kind {
                ItemKind::Model(name) => {
                    if let Some(first) = &self.model_name {
                        diags.push(
                            Diagnostic::error(
                                "fa::resolve::duplicate",
                                name.span,
                                "the model is named twice",
                                "named again here",
                            )
                            .with_related(first.span, "first named here"),
                        );
                    } else {
                        self.model_name = Some(name.clone());
                    }
                }
                ItemKind::Use { .. } => {}
                ItemKind::Pipeline { name, value } => {
                    if claim(name, diags) {
                        self.pipelines.insert(
                            name.text.clone(),
                            Def {
                                name: name.clone(),
                                value: value.clone(),
                                main,
                            },
                        );
                    }
                }
                ItemKind::Module {
                    role, name, value, ..
                } => {
                    if claim(name, diags) {
                        self.modules.insert(
                            name.text.clone(),
                            Def {
                                name: name.clone(),
                                value: (*role, value.clone()),
                                main,
                            },
                        );
                    }
                }
                ItemKind::Binding { name, value } => {
                    if claim(name, diags) {
                        self.binding_order.push(name.text.clone());
                        self.bindings.insert(
                            name.text.clone(),
                            Def {
                                name: name.clone(),
                                value: value.clone(),
                                main,
                            },
                        );
                    }
                }
                ItemKind::Sweep { name, axis } => {
                    // A sweep of the model's own file replaces a used file's sweep of the
                    // same name (e.g. the Table I columns with a smaller bank for CIFAR).
                    if let Some(position) = self
                        .sweeps
                        .iter()
                        .position(|s| s.name.text == name.text && !s.main && main)
                    {
                        self.sweeps.remove(position);
                        self.sweeps.push(Def {
                            name: name.clone(),
                            value: axis.clone(),
                            main,
                        });
                    } else if let Some(first) =
                        self.sweeps.iter().find(|s| s.name.text == name.text)
                    {
                        diags.push(
                            Diagnostic::error(
                                "fa::resolve::duplicate",
                                name.span,
                                format!("sweep `{}` is defined twice", name.text),
                                "defined again here",
                            )
                            .with_related(first.name.span, "first defined here"),
                        );
                    } else {
                        self.sweeps.push(Def {
                            name: name.clone(),
                            value: axis.clone(),
                            main,
                        });
                    }
                }
                ItemKind::RecipeDef { name, body } => {
                    if let Some(first) = self.recipes.get(&name.text) {
                        diags.push(
                            Diagnostic::error(
                                "fa::resolve::duplicate",
                                name.span,
                                format!("recipe `{}` is defined twice", name.text),
                                "defined again here",
                            )
                            .with_related(first.name.span, "first defined here"),
                        );
                    } else {
                        self.recipes.insert(
                            name.text.clone(),
                            Def {
                                name: name.clone(),
                                value: body.clone(),
                                main,
                            },
                        );
                    }
                }
                ItemKind::RecipeApply(name) => self.config.push(ConfigSource::Recipe(name.clone())),
                ItemKind::Block { section, body } => self.config.push(ConfigSource::Block {
                    section: section.clone(),
                    body: body.clone(),
                }),
                ItemKind::Loss {
                    kind,
                    terms,
                    combine,
                } => self.losses.push(LossDecl {
                    kind: kind.clone(),
                    terms: terms.clone(),
                    combine: combine.clone(),
                }),
            }
        }
    }

    /// Every expression a cell's model is built from (for sweep-variable scans).
    pub fn for_each_expr(&self, visit: &mut dyn FnMut(&Expr)) {
        let mut walk = |expr: &Expr| expr.walk(&mut |e| visit(e));
        for def in self.pipelines.values() {
            walk(&def.value);
        }
        for def in self.modules.values() {
            walk(&def.value.1);
        }
        for def in self.bindings.values() {
            walk(&def.value);
        }
        for def in self.recipes.values() {
            for entry in &def.value.entries {
                walk(&entry.value);
            }
        }
        for source in &self.config {
            if let ConfigSource::Block { body, .. } = source {
                for entry in &body.entries {
                    walk(&entry.value);
                }
            }
        }
        for loss in &self.losses {
            walk(&loss.kind);
            for term in &loss.terms {
                walk(&term.left);
                walk(&term.right);
            }
            if let Some(combine) = &loss.combine {
                walk(combine);
            }
        }
    }

    pub fn for_each_expr_mut(&mut self, visit: &mut dyn FnMut(&mut Expr)) {
        for def in self.pipelines.values_mut() {
            visit(&mut def.value);
        }
        for def in self.modules.values_mut() {
            visit(&mut def.value.1);
        }
        for def in self.bindings.values_mut() {
            visit(&mut def.value);
        }
        for def in self.recipes.values_mut() {
            for entry in &mut def.value.entries {
                visit(&mut entry.value);
            }
        }
        for source in &mut self.config {
            if let ConfigSource::Block { body, .. } = source {
                for entry in &mut body.entries {
                    visit(&mut entry.value);
                }
            }
        }
        for loss in &mut self.losses {
            visit(&mut loss.kind);
            for term in &mut loss.terms {
                visit(&mut term.left);
                visit(&mut term.right);
            }
            if let Some(combine) = &mut loss.combine {
                visit(combine);
            }
        }
    }
}
