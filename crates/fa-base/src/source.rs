//! Source files and byte spans: what every layer uses to point back into a `.fa` file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Index of a source file in a [`SourceMap`].
pub type FileId = u32;

/// A byte range in one source file.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start, end }
    }
}

/// One source text and the name diagnostics show for it.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The name shown in diagnostics: the path as given, or relative to it for used files.
    pub name: String,
    /// The path the file was read from (`None` for `--set` values and strings).
    pub path: Option<PathBuf>,
    pub text: String,
}

/// Every source text of a compilation, indexed by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    pub files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, name: impl Into<String>, path: Option<PathBuf>, text: String) -> FileId {
        self.files.push(SourceFile {
            name: name.into(),
            path,
            text,
        });
        (self.files.len() - 1) as FileId
    }

    pub fn get(&self, file: FileId) -> Option<&SourceFile> {
        self.files.get(file as usize)
    }

    /// The name and text of `file`; an unknown id gives an empty unnamed source.
    pub fn name_and_text(&self, file: FileId) -> (&str, &str) {
        match self.get(file) {
            Some(source) => (&source.name, &source.text),
            None => ("<unknown>", ""),
        }
    }

    /// The text a span covers.
    pub fn snippet(&self, span: Span) -> &str {
        let (_, text) = self.name_and_text(span.file);
        text.get(span.start..span.end).unwrap_or("")
    }
}
