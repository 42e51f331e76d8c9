//! Hover: a value's shape and width, a module's configuration and parameter count, a
//! parameter's meaning and default, a word's documentation.

use fa_lang::ir::{FeatureShape, NodeKind};
use fa_lang::plan::{self, thousands, ParamKind};
use fa_lang::valid::ValidModel;
use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind};

use crate::cursor;
use crate::position;
use crate::words;
use crate::workspace::Document;

/// The hover text at byte `offset` of `document`, if anything is known there.
pub fn hover(document: &Document, offset: usize) -> Option<Hover> {
    let text = &document.text;
    let (start, end, word) = cursor::word_at(text, offset)?;
    let analysis = &document.analysis;
    let markdown = cursor::parameter_at(&analysis.parsed.items, offset)
        .and_then(|(owner, param)| parameter(&owner, &param))
        .or_else(|| analysis.model().and_then(|valid| module(valid, word)))
        .or_else(|| analysis.model().and_then(|valid| value(valid, word)))
        .or_else(|| vocabulary(word))
        .or_else(|| keyword(word))?;
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: markdown,
        }),
        range: Some(position::range(text, start, end)),
    })
}

fn parameter(owner: &str, param: &str) -> Option<String> {
    let (what, word) = words::word(owner)?;
    if !word.params.contains(&param) {
        return None;
    }
    let mut out = format!(
        "`{param}`: parameter of the {what} `{}`: {}",
        word.name, word.doc
    );
    if let Some(default) = words::default_of(word.name, param) {
        out.push_str(&format!("\n\ndefault: `{default}`"));
    }
    Some(out)
}

fn width_text(shape: FeatureShape) -> String {
    match shape {
        FeatureShape::Vector { width, samples } if samples > 1 => {
            format!(
                "{} (width {width}, {samples} FA samples)",
                plan::shape_text(shape)
            )
        }
        FeatureShape::Vector { width, .. } => {
            format!("{} (width {width})", plan::shape_text(shape))
        }
        FeatureShape::Image { .. } => format!("{} (images)", plan::shape_text(shape)),
    }
}

/// A named module: its configuration as `fa lower` prints it, its output and its
/// parameters (trainable, or EMA copies for a target).
fn module(valid: &ValidModel, name: &str) -> Option<String> {
    let definition = valid.model().modules.get(name)?;
    let plan = plan::plan(valid);
    let applies = |node_name: &str| {
        valid.node_by_name(node_name).is_some_and(|node| {
            matches!(&valid.model().graph[node].kind, NodeKind::Apply { module } if module == name)
        })
    };
    let op = plan
        .ops
        .iter()
        .find(|op| op.op == "apply" && applies(&op.node));
    let mut out = format!("{:?} `{name}`", definition.role).to_lowercase();
    let Some(op) = op else {
        out.push_str("\n\nnot applied in the graph");
        return Some(out);
    };
    out.push_str(&format!(": {}", op.config));
    if let (Some(input), Some(output)) = (op.inputs.first(), &op.output) {
        out.push_str(&format!("\n\n{} → {output}", input.shape));
    }
    let prefix = format!("{}.", op.param_path.as_deref().unwrap_or(name));
    let count = |kind: ParamKind| -> usize {
        plan.params
            .iter()
            .filter(|entry| entry.kind == kind && entry.name.starts_with(&prefix))
            .map(|entry| entry.numel())
            .sum()
    };
    let trainable = count(ParamKind::Trainable);
    let ema = count(ParamKind::Ema);
    if trainable > 0 {
        out.push_str(&format!(
            "\n\n{} trainable parameters",
            thousands(trainable)
        ));
    }
    if ema > 0 {
        out.push_str(&format!(
            "\n\n{} values in the EMA copy (no gradient)",
            thousands(ema)
        ));
    }
    Some(out)
}

/// A named value of the graph (`anchor`, `positive`): what it is and its shape.
fn value(valid: &ValidModel, name: &str) -> Option<String> {
    let node = valid.node_by_name(name)?;
    let what = match &valid.model().graph[node].kind {
        NodeKind::View { pipeline } => format!("a view drawn with `{pipeline}`"),
        NodeKind::Apply { module } => format!("the output of `{module}`"),
        NodeKind::StopGrad => "a stopped gradient".into(),
        NodeKind::FeatureAug(_) => "feature-augmented samples".into(),
        NodeKind::Loss(_) => return Some(format!("`{name}`: a loss term")),
    };
    Some(format!(
        "`{name}`: {what}\n\n{}",
        width_text(valid.shape(node))
    ))
}

fn vocabulary(name: &str) -> Option<String> {
    let (what, word) = words::word(name)?;
    let mut out = format!("{what} `{}`: {}", word.name, word.doc);
    if !word.params.is_empty() {
        out.push_str(&format!("\n\nparameters: {}", word.params.join(", ")));
    }
    Some(out)
}

fn keyword(name: &str) -> Option<String> {
    words::KEYWORDS
        .iter()
        .find(|(keyword, _)| *keyword == name)
        .map(|(_, doc)| doc.to_string())
}
