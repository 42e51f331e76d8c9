//! Resolution: reads a file and the files it `use`s, applies `--set` overrides, expands
//! sweeps, and turns every sweep cell into a validated `ir::Model`.
//!
//! The front end's single entry point is [`compile_file`]; [`compile_source`] does the same
//! for text held in memory (tests, the formatter's checks).

mod build;
mod config;
mod params;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::diag::{did_you_mean, Diagnostic, Report};
use crate::ir::{self, Span};
use crate::syntax::ast::{Expr, ExprKind, Ident, Item, ItemKind, Record, Role, Term};
use crate::syntax::{self, SourceMap};
use crate::valid::{self, ValidModel};

pub use config::KNOWN_KEYS;

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

/// One sweep cell: a complete model. A file without sweeps has exactly one cell.
#[derive(Clone, Debug)]
pub struct Cell {
    /// `model` or `model[axis=label,...]`.
    pub name: String,
    /// `(axis, label)` per sweep axis, in declaration order.
    pub labels: Vec<(String, String)>,
    pub model: ir::Model,
}

/// A compiled file: every cell validated, and the warnings found on the way.
#[derive(Debug)]
pub struct Compiled {
    pub cells: Vec<(Cell, ValidModel)>,
    /// The sources and every warning (no errors: those make `compile_file` fail).
    pub report: Report,
}

impl Compiled {
    pub fn sources(&self) -> &SourceMap {
        &self.report.sources
    }

    pub fn warnings(&self) -> &[Diagnostic] {
        &self.report.diagnostics
    }
}

/// Reads `path` (and the files it `use`s), applies overrides, expands sweeps, validates
/// every cell. A file that cannot be read gives a report whose `io_error` is set.
pub fn compile_file(path: &Path, overrides: &[Override]) -> Result<Compiled, Report> {
    let bytes = std::fs::read(path).map_err(Report::io)?;
    compile_bytes(&path.display().to_string(), Some(path), bytes, overrides)
}

/// Compiles source text held in memory; `name` is shown in diagnostics and `use` paths are
/// relative to its folder.
pub fn compile_source(name: &str, text: &str, overrides: &[Override]) -> Result<Compiled, Report> {
    compile_bytes(
        name,
        Some(Path::new(name)),
        text.as_bytes().to_vec(),
        overrides,
    )
}

fn compile_bytes(
    name: &str,
    path: Option<&Path>,
    bytes: Vec<u8>,
    overrides: &[Override],
) -> Result<Compiled, Report> {
    let mut loader = Loader::default();
    let main = loader.load_root(name, path, bytes);
    let mut program = Program::default();
    let mut diags = std::mem::take(&mut loader.diags);
    let main_file = main.unwrap_or(0);
    program.collect(&loader.items, main_file, &mut diags);
    let default_name = Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut sources = loader.sources;
    let overrides = program.apply_overrides(overrides, &mut sources, &mut diags);
    let mut cells = Vec::new();
    if !diags.iter().any(Diagnostic::is_error) {
        for (labels, program) in program.expand(&overrides, &sources, main_file, &mut diags) {
            let base = program
                .model_name
                .as_ref()
                .map(|n| n.text.clone())
                .unwrap_or_else(|| default_name.clone());
            let name = if labels.is_empty() {
                base
            } else {
                format!(
                    "{base}[{}]",
                    labels
                        .iter()
                        .map(|(axis, label)| format!("{axis}={label}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            };
            if let Some(model) = build::build(&program, &name, main_file, &sources, &mut diags) {
                cells.push((
                    Cell {
                        name,
                        labels,
                        model,
                    },
                    (),
                ));
            }
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Report::new(sources, diags));
    }
    let mut validated = Vec::new();
    for (cell, ()) in cells {
        match valid::validate(cell.model.clone()) {
            Ok(model) => {
                diags.extend(model.warnings().iter().cloned());
                validated.push((cell, model));
            }
            Err(problems) => diags.extend(problems),
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Report::new(sources, diags));
    }
    Ok(Compiled {
        cells: validated,
        report: Report::new(sources, diags),
    })
}

/// Files read so far and the statements they contribute, `use`s expanded in place.
#[derive(Default)]
struct Loader {
    sources: SourceMap,
    diags: Vec<Diagnostic>,
    /// Canonical paths already loaded (a second `use` of the same file adds nothing).
    loaded: BTreeSet<PathBuf>,
    /// The chain of files being loaded, for cycle detection, with the `use` that led there.
    stack: Vec<(PathBuf, Option<Span>)>,
    /// Statements in order, each with the file it came from.
    items: Vec<Item>,
}

/// Uses may nest at most this deep (a chain of distinct files).
const MAX_USE_DEPTH: usize = 64;

impl Loader {
    fn load_root(&mut self, name: &str, path: Option<&Path>, bytes: Vec<u8>) -> Option<ir::FileId> {
        let canonical = path
            .and_then(|p| p.canonicalize().ok())
            .unwrap_or_else(|| PathBuf::from(name));
        self.load(
            name.to_string(),
            path.map(Path::to_path_buf),
            canonical,
            bytes,
            None,
        )
    }

    fn load(
        &mut self,
        name: String,
        path: Option<PathBuf>,
        canonical: PathBuf,
        bytes: Vec<u8>,
        used_at: Option<Span>,
    ) -> Option<ir::FileId> {
        let id = self.sources.add(name.clone(), path.clone(), String::new());
        let (text, problem) = syntax::decode(id, bytes);
        self.sources.files[id as usize].text = text;
        if let Some(problem) = problem {
            self.diags.push(problem);
            return Some(id);
        }
        self.loaded.insert(canonical.clone());
        self.stack.push((canonical, used_at));
        let parsed = syntax::parse_file(id, &self.sources.files[id as usize].text);
        match parsed {
            Err(problems) => self.diags.extend(problems),
            Ok(file) => {
                for item in file.items {
                    if let ItemKind::Use {
                        path: target,
                        path_span,
                    } = &item.kind
                    {
                        self.load_use(&name, path.as_deref(), target, *path_span);
                        continue;
                    }
                    if used_at.is_some() {
                        if let ItemKind::Model(ident) = &item.kind {
                            self.diags.push(
                                Diagnostic::error("fa::resolve::model_in_use", ident.span, "a used file cannot declare a model", "model declared here")
                                    .with_related(used_at.expect("checked"), "used here")
                                    .with_help("remove the `model` line: a used file is a library of definitions"),
                            );
                            continue;
                        }
                    }
                    self.items.push(item);
                }
            }
        }
        self.stack.pop();
        Some(id)
    }

    fn load_use(&mut self, user_name: &str, user_path: Option<&Path>, target: &str, span: Span) {
        let folder = user_path.and_then(Path::parent).unwrap_or(Path::new(""));
        let path = folder.join(target);
        let name_folder = Path::new(user_name).parent().unwrap_or(Path::new(""));
        let name = normalize(&name_folder.join(target));
        let Ok(canonical) = path.canonicalize() else {
            self.diags.push(
                Diagnostic::error(
                    "fa::resolve::use_missing",
                    span,
                    format!("cannot find `{target}`"),
                    "no such file",
                )
                .with_help(format!(
                    "the path is relative to this file's folder; looked for {name}"
                )),
            );
            return;
        };
        if let Some(position) = self.stack.iter().position(|(p, _)| *p == canonical) {
            let mut cycle: Vec<String> = self.stack[position..]
                .iter()
                .map(|(p, _)| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect();
            cycle.push(cycle[0].clone());
            let mut diagnostic = Diagnostic::error(
                "fa::resolve::use_cycle",
                span,
                format!("`use` cycle: {}", cycle.join(" → ")),
                "this use closes the cycle",
            )
            .with_help("move the shared definitions into a third file that both use");
            if let Some(Some(first)) = self.stack.get(position + 1).map(|(_, s)| *s) {
                diagnostic = diagnostic.with_related(first, "the cycle starts here");
            }
            self.diags.push(diagnostic);
            return;
        }
        if self.loaded.contains(&canonical) {
            return;
        }
        if self.stack.len() >= MAX_USE_DEPTH {
            self.diags.push(Diagnostic::error(
                "fa::resolve::use_depth",
                span,
                format!("`use` nests deeper than {MAX_USE_DEPTH} files"),
                "too deep",
            ));
            return;
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                self.load(name, Some(path), canonical, bytes, Some(span));
            }
            Err(error) => self.diags.push(Diagnostic::error(
                "fa::resolve::use_missing",
                span,
                format!("cannot read `{target}`: {error}"),
                "cannot read this file",
            )),
        }
    }
}

/// Removes `.` and folds `name/..` so names shown in diagnostics stay short and relative.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if parts.last().is_some_and(|p| p != "..") => {
                parts.pop();
            }
            other => parts.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    let joined = parts.join("/");
    joined.replace("//", "/")
}

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
    fn collect(&mut self, items: &[Item], main_file: ir::FileId, diags: &mut Vec<Diagnostic>) {
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
            if build::RESERVED.contains(&name.text.as_str()) {
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
    fn for_each_expr(&self, visit: &mut dyn FnMut(&Expr)) {
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

    fn for_each_expr_mut(&mut self, visit: &mut dyn FnMut(&mut Expr)) {
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

    /// Applies `--set` overrides to the program. Sweep-axis overrides are returned, to be
    /// applied at expansion.
    fn apply_overrides(
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
            if parts.len() >= 2 && config::SECTIONS.contains(&parts[0]) {
                if !KNOWN_KEYS.contains(&item.key.as_str()) {
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
        let mut candidates: Vec<String> = KNOWN_KEYS.iter().map(|k| k.to_string()).collect();
        candidates.extend(self.sweeps.iter().map(|s| s.name.text.clone()));
        candidates.push("loss.combine".into());
        candidates.push("loss.tau".into());
        for (name, def) in &self.modules {
            if let ExprKind::Call { name: callee, .. } = &def.value.1.kind {
                for param in build::module_params(&callee.text) {
                    candidates.push(format!("{name}.{param}"));
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

    /// The cells: one program per point of the grid of referenced sweep axes.
    fn expand(
        &self,
        axis_overrides: &[(String, Expr, String)],
        sources: &SourceMap,
        main_file: ir::FileId,
        diags: &mut Vec<Diagnostic>,
    ) -> Vec<(Vec<(String, String)>, Program)> {
        let mut referenced: BTreeMap<String, Span> = BTreeMap::new();
        self.for_each_expr(&mut |expr| {
            if let ExprKind::Var(name) = &expr.kind {
                referenced.entry(name.clone()).or_insert(expr.span);
            }
        });
        // A referenced sweep's values may refer to further sweeps.
        loop {
            let mut added = false;
            for sweep in &self.sweeps {
                if referenced.contains_key(&sweep.name.text) {
                    sweep.value.walk(&mut |expr| {
                        if let ExprKind::Var(name) = &expr.kind {
                            if !referenced.contains_key(name) {
                                referenced.insert(name.clone(), expr.span);
                                added = true;
                            }
                        }
                    });
                }
            }
            if !added {
                break;
            }
        }
        for (name, span) in &referenced {
            if !self.sweeps.iter().any(|s| &s.name.text == name) {
                let diagnostic = Diagnostic::error(
                    "fa::resolve::unknown_variable",
                    *span,
                    format!("no sweep named `{name}`"),
                    "not a sweep",
                );
                let help = did_you_mean(name, self.sweeps.iter().map(|s| s.name.text.as_str()))
                    .unwrap_or_else(|| {
                        format!("declare it: sweep {name} = {{ label: value, ... }}")
                    });
                diags.push(diagnostic.with_help(help));
            }
        }
        let mut axes: Vec<(String, Vec<(String, Expr)>)> = Vec::new();
        for sweep in &self.sweeps {
            if !referenced.contains_key(&sweep.name.text) {
                if sweep.main {
                    diags.push(
                        Diagnostic::warning(
                            "fa::resolve::unused_sweep",
                            sweep.name.span,
                            format!("sweep `{}` is never used", sweep.name.text),
                            "never referenced",
                        )
                        .with_help(format!(
                            "refer to it as `${}` where the value varies",
                            sweep.name.text
                        )),
                    );
                }
                continue;
            }
            let mut values: Vec<(String, Expr)> = match &sweep.value.kind {
                ExprKind::Record(record) => record
                    .entries
                    .iter()
                    .map(|e| (e.key.text.clone(), e.value.clone()))
                    .collect(),
                ExprKind::List(items) => items
                    .iter()
                    .map(|e| (sources.snippet(e.span).to_string(), e.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            if values.is_empty() {
                diags.push(Diagnostic::error(
                    "fa::resolve::sweep_empty",
                    sweep.value.span,
                    format!("sweep `{}` has no values", sweep.name.text),
                    "empty",
                ));
                continue;
            }
            for (axis, value, text) in axis_overrides {
                if axis != &sweep.name.text {
                    continue;
                }
                if let Some(found) = values.iter().find(|(label, _)| label == text).cloned() {
                    values = vec![found];
                } else if matches!(&sweep.value.kind, ExprKind::Record(_)) {
                    let labels: Vec<&str> = values.iter().map(|(l, _)| l.as_str()).collect();
                    let diagnostic = Diagnostic::error(
                        "fa::resolve::sweep_label",
                        value.span,
                        format!("sweep `{axis}` has no cell `{text}`"),
                        "unknown label",
                    );
                    let help = did_you_mean(text, labels.iter().copied()).unwrap_or_else(|| {
                        format!("its labels are {}", params::quote_list(&labels))
                    });
                    diags.push(diagnostic.with_help(help));
                } else {
                    values = vec![(text.clone(), value.clone())];
                }
            }
            axes.push((sweep.name.text.clone(), values));
        }
        let _ = main_file;
        if diags.iter().any(Diagnostic::is_error) {
            return Vec::new();
        }
        let mut cells: Vec<Vec<usize>> = vec![Vec::new()];
        for (_, values) in &axes {
            cells = cells
                .into_iter()
                .flat_map(|prefix| {
                    (0..values.len()).map(move |i| [prefix.clone(), vec![i]].concat())
                })
                .collect();
        }
        cells
            .into_iter()
            .map(|choice| {
                let labels: Vec<(String, String)> = axes
                    .iter()
                    .zip(&choice)
                    .map(|((axis, values), &i)| (axis.clone(), values[i].0.clone()))
                    .collect();
                let lookup: BTreeMap<&str, &Expr> = axes
                    .iter()
                    .zip(&choice)
                    .map(|((axis, values), &i)| (axis.as_str(), &values[i].1))
                    .collect();
                let mut program = self.clone();
                program.for_each_expr_mut(&mut |expr| {
                    expr.substitute(&|name| lookup.get(name).map(|e| (*e).clone()))
                });
                (labels, program)
            })
            .collect()
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
        entries: vec![crate::syntax::ast::Entry { key, value }],
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
                args.push(crate::syntax::ast::Arg {
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
                args: vec![crate::syntax::ast::Arg {
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
