//! The open files: their texts as the editor holds them and their analyses, redone for
//! every open file whenever one changes (a change to a `use`d file changes the diagnostics
//! of the files that use it; `.fa` files compile in milliseconds).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use lsp_types::{PublishDiagnosticsParams, Url};

use crate::analysis::{self, Analysis};

/// One open file.
#[derive(Debug)]
pub struct Document {
    pub text: String,
    pub version: i32,
    pub path: PathBuf,
    pub analysis: Analysis,
}

/// Every open file, and the files diagnostics were last published for.
#[derive(Debug, Default)]
pub struct Workspace {
    pub documents: BTreeMap<Url, Document>,
    published: BTreeSet<Url>,
}

/// The path of a `file:` URI; other schemes (an unsaved editor buffer) get a name in the
/// current folder, so `use` paths in them resolve from there.
pub fn uri_path(uri: &Url) -> PathBuf {
    uri.to_file_path().unwrap_or_else(|()| {
        let name = uri.path().rsplit('/').next().unwrap_or("untitled.fa");
        PathBuf::from(if name.is_empty() { "untitled.fa" } else { name })
    })
}

fn canonical(path: &std::path::Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

impl Workspace {
    pub fn open(&mut self, uri: Url, text: String, version: i32) {
        let path = uri_path(&uri);
        self.documents.insert(
            uri,
            Document {
                text,
                version,
                path,
                analysis: Analysis::empty(),
            },
        );
        self.reanalyse();
    }

    pub fn change(&mut self, uri: &Url, text: String, version: i32) {
        if let Some(document) = self.documents.get_mut(uri) {
            document.text = text;
            document.version = version;
        }
        self.reanalyse();
    }

    pub fn close(&mut self, uri: &Url) {
        self.documents.remove(uri);
        self.reanalyse();
    }

    /// Analyses every open file against the others' buffers.
    fn reanalyse(&mut self) {
        let buffers: BTreeMap<PathBuf, String> = self
            .documents
            .values()
            .map(|document| (canonical(&document.path), document.text.clone()))
            .collect();
        for document in self.documents.values_mut() {
            let mut overlay = buffers.clone();
            overlay.remove(&canonical(&document.path));
            document.analysis = analysis::analyse(&document.path, &document.text, overlay);
        }
    }

    /// The URI for a path a compilation read: the open file's when it is open, else a
    /// `file:` URI of its canonical path.
    fn uri_for(&self, path: &std::path::Path) -> Option<Url> {
        let wanted = canonical(path);
        self.documents
            .iter()
            .find(|(_, document)| canonical(&document.path) == wanted)
            .map(|(uri, _)| uri.clone())
            .or_else(|| Url::from_file_path(&wanted).ok())
    }

    /// The diagnostics to publish: for every open file, and for every file that got some
    /// from an open file's compilation (a used file), merged; and an empty list for each
    /// file that had diagnostics before and has none now.
    pub fn diagnostics(&mut self) -> Vec<PublishDiagnosticsParams> {
        let mut by_uri: BTreeMap<Url, Vec<lsp_types::Diagnostic>> = BTreeMap::new();
        for (uri, document) in &self.documents {
            by_uri.entry(uri.clone()).or_default();
            let analysis = &document.analysis;
            let own = |file: u32| {
                if file == 0 {
                    Some(uri.clone())
                } else {
                    analysis::file_path(&analysis.sources, file).and_then(|p| self.uri_for(&p))
                }
            };
            for problem in &analysis.parsed.problems {
                let converted = analysis::to_lsp(problem, &analysis.sources, &own);
                let list = by_uri.entry(uri.clone()).or_default();
                // A used file's syntax error also comes from the files that use it.
                if !list.contains(&converted) {
                    list.push(converted);
                }
            }
            for diagnostic in &analysis.diagnostics {
                let Some(target) = own(diagnostic.span.file) else {
                    continue;
                };
                let converted = analysis::to_lsp(diagnostic, &analysis.sources, &own);
                let list = by_uri.entry(target).or_default();
                if !list.contains(&converted) {
                    list.push(converted);
                }
            }
        }
        let mut out = Vec::new();
        for uri in std::mem::take(&mut self.published) {
            if !by_uri.contains_key(&uri) {
                out.push(PublishDiagnosticsParams::new(uri, Vec::new(), None));
            }
        }
        for (uri, diagnostics) in by_uri {
            if !diagnostics.is_empty() {
                self.published.insert(uri.clone());
            } else if !self.documents.contains_key(&uri) {
                continue;
            }
            let version = self.documents.get(&uri).map(|document| document.version);
            out.push(PublishDiagnosticsParams::new(uri, diagnostics, version));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "model t
use \"common.fa\"
data { format: idx, path: \"fashion-mnist\", limit: 1000 }
pipeline p = [crop, flip]
encoder f = convnet(16, 32)
predictor q = mlp(64, 32)
anchor = view(p) -> f -> g -> q
positive = view(p) -> f -> g -> stopgrad
loss infonce(tau: 0.2) { anchor ~ positive }
";

    #[test]
    fn a_syntax_error_in_an_open_used_file_is_published_once_and_cleared_when_fixed() {
        let folder = tempfile::tempdir().unwrap();
        let folder = folder.path().canonicalize().unwrap();
        let main_path = folder.join("main.fa");
        let common_path = folder.join("common.fa");
        std::fs::write(&main_path, MAIN).unwrap();
        std::fs::write(&common_path, "projector g = mlp(64, 32)\n").unwrap();
        let main = Url::from_file_path(&main_path).unwrap();
        let common = Url::from_file_path(&common_path).unwrap();
        let mut workspace = Workspace::default();
        workspace.open(main.clone(), MAIN.into(), 1);
        workspace.open(common.clone(), "projector g = mlp(64, 32)\n".into(), 1);
        let published = workspace.diagnostics();
        assert!(
            published.iter().all(|p| p.diagnostics.is_empty()),
            "{published:?}"
        );

        // Both the used file's own parse and the using file's compile see the error: once.
        workspace.change(&common, "projector g = mlp(64, 32\n".into(), 2);
        let published = workspace.diagnostics();
        let for_common: Vec<_> = published.iter().filter(|p| p.uri == common).collect();
        assert_eq!(for_common.len(), 1);
        assert_eq!(
            for_common[0].diagnostics.len(),
            1,
            "{:?}",
            for_common[0].diagnostics
        );
        let code = for_common[0].diagnostics[0].code.clone();
        assert!(
            matches!(code, Some(lsp_types::NumberOrString::String(c)) if c.starts_with("fa::syntax"))
        );
        // The file that uses it has no problem of its own.
        assert!(published
            .iter()
            .any(|p| p.uri == main && p.diagnostics.is_empty()));

        // Fixed: the used file's diagnostics are cleared.
        workspace.change(&common, "projector g = mlp(64, 32)\n".into(), 3);
        let published = workspace.diagnostics();
        assert!(published
            .iter()
            .any(|p| p.uri == common && p.diagnostics.is_empty()));
        // Closing it: the using file reads the disk again, and nothing is published for the
        // closed file that had nothing.
        workspace.close(&common);
        let published = workspace.diagnostics();
        assert!(published.iter().all(|p| p.uri != common), "{published:?}");
    }
}
