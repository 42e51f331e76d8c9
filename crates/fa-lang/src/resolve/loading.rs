//! Loading: reads the main file and every file it `use`s, in statement order, each once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::diag::Diagnostic;
use crate::ir::{self, Span};
use crate::syntax::ast::{Item, ItemKind};
use crate::syntax::{self, SourceMap};

/// Files read so far and the statements they contribute, `use`s expanded in place.
#[derive(Default)]
pub(super) struct Loader {
    pub sources: SourceMap,
    pub diags: Vec<Diagnostic>,
    /// Canonical paths already loaded (a second `use` of the same file adds nothing).
    loaded: BTreeSet<PathBuf>,
    /// The chain of files being loaded, for cycle detection, with the `use` that led there.
    stack: Vec<(PathBuf, Option<Span>)>,
    /// Statements in order, each with the file it came from.
    pub items: Vec<Item>,
    /// Texts that replace the files on disk, by canonical path: an editor's unsaved buffers.
    pub overlay: BTreeMap<PathBuf, String>,
}

/// Uses may nest at most this deep (a chain of distinct files).
const MAX_USE_DEPTH: usize = 64;

impl Loader {
    pub fn load_root(
        &mut self,
        name: &str,
        path: Option<&Path>,
        bytes: Vec<u8>,
    ) -> Option<ir::FileId> {
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
                    if let (Some(used_at), ItemKind::Model(ident)) = (used_at, &item.kind) {
                        self.diags.push(
                            Diagnostic::error(
                                "fa::resolve::model_in_use",
                                ident.span,
                                "a used file cannot declare a model",
                                "model declared here",
                            )
                            .with_related(used_at, "used here")
                            .with_help(
                                "remove the `model` line: a used file is a library of definitions",
                            ),
                        );
                        continue;
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
        let read = match self.overlay.get(&canonical) {
            Some(text) => Ok(text.clone().into_bytes()),
            None => fa_base::fsio::read_source(&path),
        };
        match read {
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
