//! Parsing: `.fa` text into a syntax tree with byte spans; the only module that knows pest.

pub mod ast;
pub mod comments;

use pest::iterators::Pair;
use pest::Parser as _;

use crate::diag::Diagnostic;
use crate::ir::{FileId, Span};
use ast::*;
pub use fa_base::source::{SourceFile, SourceMap};

/// Brackets may nest at most this deep; deeper input is rejected before parsing, so the
/// recursive-descent parser can never overflow the stack.
pub const MAX_NESTING: usize = 32;

#[derive(pest_derive::Parser)]
#[grammar = "../../../grammar/fa.pest"]
struct FaParser;

/// Decodes file bytes; invalid UTF-8 is replaced and reported at its first offset.
pub fn decode(file: FileId, bytes: Vec<u8>) -> (String, Option<Diagnostic>) {
    match String::from_utf8(bytes) {
        Ok(text) => (text, None),
        Err(error) => {
            let offset = error.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(error.as_bytes()).into_owned();
            // The lossy text has a 3-byte replacement character where the bad byte was.
            let span = Span::new(file, offset, (offset + 3).min(text.len()));
            let diagnostic = Diagnostic::error(
                "fa::syntax::invalid_utf8",
                span,
                "the file is not valid UTF-8",
                "invalid byte here",
            )
            .with_help("save the file as UTF-8");
            (text, Some(diagnostic))
        }
    }
}

/// Parses one file. Returns every syntax problem found (pest stops at the first).
pub fn parse_file(file: FileId, text: &str) -> Result<File, Vec<Diagnostic>> {
    check_nesting(file, text)?;
    let mut pairs =
        FaParser::parse(Rule::file, text).map_err(|error| vec![parse_error(file, text, error)])?;
    let root = pairs
        .next()
        .expect("the file rule always produces one pair");
    let span = span_of(file, &root);
    let mut items = Vec::new();
    for pair in root.into_inner() {
        if pair.as_rule() == Rule::EOI {
            continue;
        }
        items.push(item(file, pair));
    }
    Ok(File { items, span })
}

/// Parses a lone expression (the value of a `--set` override).
pub fn parse_expr(file: FileId, text: &str) -> Result<Expr, Vec<Diagnostic>> {
    check_nesting(file, text)?;
    let mut pairs = FaParser::parse(Rule::override_value, text)
        .map_err(|error| vec![parse_error(file, text, error)])?;
    let root = pairs.next().expect("override_value produces one pair");
    let pair = root
        .into_inner()
        .next()
        .expect("override_value holds an expression");
    Ok(expr(file, pair))
}

fn check_nesting(file: FileId, text: &str) -> Result<(), Vec<Diagnostic>> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut index = 0;
    let mut in_string = false;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                b'\\' => index += 1,
                b'"' | b'\n' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'/' if bytes.get(index + 1) == Some(&b'/') => {
                    while index < bytes.len() && bytes[index] != b'\n' {
                        index += 1;
                    }
                    continue;
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        let span = Span::new(file, index, index + 1);
                        return Err(vec![Diagnostic::error(
                            "fa::syntax::too_deep",
                            span,
                            format!("brackets nest deeper than {MAX_NESTING} levels"),
                            "this bracket is too deep",
                        )
                        .with_help(
                            "flatten the value; no `.fa` construct needs this much nesting",
                        )]);
                    }
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        index += 1;
    }
    Ok(())
}

fn rule_name(rule: &Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::file | Rule::statement => "a statement",
        Rule::model_decl | Rule::kw_model => "`model`",
        Rule::use_decl | Rule::kw_use => "`use`",
        Rule::pipeline_decl | Rule::kw_pipeline => "`pipeline`",
        Rule::module_decl | Rule::role => {
            "a module role (`encoder`, `projector`, `predictor`, `target`)"
        }
        Rule::sweep_decl | Rule::kw_sweep => "`sweep`",
        Rule::recipe_decl | Rule::recipe_apply | Rule::kw_recipe => "`recipe`",
        Rule::block_decl | Rule::section => "a section (`data`, `optim`, `train`, `eval`)",
        Rule::loss_decl | Rule::kw_loss => "`loss`",
        Rule::combine | Rule::kw_combine => "`combine`",
        Rule::term => "a loss term `a ~ b`",
        Rule::symmetric => "`symmetric`",
        Rule::binding => "a binding `name = ...`",
        Rule::expr | Rule::override_value | Rule::step => "a value",
        Rule::fa_step | Rule::kw_fa => "`fa`",
        Rule::per | Rule::kw_per => "`per`",
        Rule::call => "a call",
        Rule::arg => "an argument",
        Rule::tuple => "a tuple",
        Rule::list => "a list",
        Rule::record => "`{`",
        Rule::entry => "an entry `key: value`",
        Rule::var => "a sweep variable `$name`",
        Rule::number => "a number",
        Rule::string | Rule::string_inner => "a string",
        Rule::boolean => "`true` or `false`",
        Rule::ident | Rule::name => "a name",
        Rule::keyword => "a keyword",
        Rule::WHITESPACE | Rule::COMMENT | Rule::ident_char => "whitespace",
    }
}

fn parse_error(file: FileId, text: &str, error: pest::error::Error<Rule>) -> Diagnostic {
    let start = match error.location {
        pest::error::InputLocation::Pos(pos) => pos,
        pest::error::InputLocation::Span((start, _)) => start,
    };
    // Point at the whole offending token rather than one character.
    let rest = &text[start.min(text.len())..];
    let token_len = rest
        .char_indices()
        .find(|(i, c)| *i > 0 && !(c.is_alphanumeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(rest.len())
        .max(rest.chars().next().map_or(0, char::len_utf8));
    let span = Span::new(file, start, start + token_len);
    let found = if rest.is_empty() {
        "the end of the file".to_string()
    } else {
        let token: String = rest[..token_len].chars().take(20).collect();
        format!("`{}`", token.escape_debug())
    };
    let expected = match &error.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().map(rule_name).collect();
            names.sort();
            names.dedup();
            names
        }
        pest::error::ErrorVariant::CustomError { .. } => Vec::new(),
    };
    let expected_text = match expected.len() {
        0 => "something else".to_string(),
        1 => expected[0].to_string(),
        n => format!("{} or {}", expected[..n - 1].join(", "), expected[n - 1]),
    };
    // A letter outside ASCII where a name was being written is the likely slip: say so.
    let word = rest
        .split(|c: char| c.is_ascii_whitespace())
        .next()
        .unwrap_or("");
    let help = match word.chars().find(|c| !c.is_ascii()) {
        Some(c) if c.is_alphanumeric() => format!(
            "names are ASCII letters, digits and `_`; `{c}` (U+{:04X}) is not ASCII: rename, e.g. with `{}`",
            c as u32,
            ascii_suggestion(word.split(|c: char| !(c.is_alphanumeric() || c == '_')).find(|part| !part.is_ascii()).unwrap_or(word))
        ),
        Some(c) if c.is_control() || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}') => format!(
            "`{}` (U+{:04X}) is an invisible character: delete it",
            c.escape_unicode(),
            c as u32
        ),
        _ => "see docs/language.md for the syntax".to_string(),
    };
    Diagnostic::error(
        "fa::syntax::parse",
        span,
        format!("unexpected {found}, expected {expected_text}"),
        format!("expected {expected_text}"),
    )
    .with_help(help)
}

/// `name` with each non-ASCII letter replaced by its plain Latin base where one is obvious
/// (`ä` → `a`), else by `_`.
fn ascii_suggestion(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            c if c.is_ascii() => c,
            'à'..='å' => 'a',
            'À'..='Å' => 'A',
            'ç' => 'c',
            'Ç' => 'C',
            'è'..='ë' => 'e',
            'È'..='Ë' => 'E',
            'ì'..='ï' => 'i',
            'Ì'..='Ï' => 'I',
            'ñ' => 'n',
            'Ñ' => 'N',
            'ò'..='ö' | 'ø' => 'o',
            'Ò'..='Ö' | 'Ø' => 'O',
            'ù'..='ü' => 'u',
            'Ù'..='Ü' => 'U',
            'ý' | 'ÿ' => 'y',
            'ß' => 's',
            _ => '_',
        })
        .collect()
}

fn span_of(file: FileId, pair: &Pair<'_, Rule>) -> Span {
    let span = pair.as_span();
    Span::new(file, span.start(), span.end())
}

fn ident(file: FileId, pair: Pair<'_, Rule>) -> Ident {
    Ident {
        text: pair.as_str().to_string(),
        span: span_of(file, &pair),
    }
}

fn item(file: FileId, pair: Pair<'_, Rule>) -> Item {
    let span = span_of(file, &pair);
    let rule = pair.as_rule();
    let mut inner = pair.into_inner();
    let kind = match rule {
        Rule::model_decl => {
            inner.next();
            ItemKind::Model(ident(file, inner.next().expect("model name")))
        }
        Rule::use_decl => {
            inner.next();
            let string = inner.next().expect("use path");
            let path_span = span_of(file, &string);
            ItemKind::Use {
                path: unescape(string.into_inner().next().map_or("", |p| p.as_str())),
                path_span,
            }
        }
        Rule::pipeline_decl => {
            inner.next();
            let name = ident(file, inner.next().expect("pipeline name"));
            ItemKind::Pipeline {
                name,
                value: expr(file, inner.next().expect("pipeline value")),
            }
        }
        Rule::module_decl => {
            let role_pair = inner.next().expect("role");
            let role_span = span_of(file, &role_pair);
            let role = match role_pair.as_str() {
                "encoder" => Role::Encoder,
                "projector" => Role::Projector,
                "predictor" => Role::Predictor,
                _ => Role::Target,
            };
            let name = ident(file, inner.next().expect("module name"));
            ItemKind::Module {
                role,
                role_span,
                name,
                value: expr(file, inner.next().expect("module value")),
            }
        }
        Rule::sweep_decl => {
            inner.next();
            let name = ident(file, inner.next().expect("sweep name"));
            ItemKind::Sweep {
                name,
                axis: step(file, inner.next().expect("sweep axis")),
            }
        }
        Rule::recipe_decl => {
            inner.next();
            let name = ident(file, inner.next().expect("recipe name"));
            ItemKind::RecipeDef {
                name,
                body: record(file, inner.next().expect("recipe body")),
            }
        }
        Rule::recipe_apply => {
            inner.next();
            ItemKind::RecipeApply(ident(file, inner.next().expect("recipe name")))
        }
        Rule::block_decl => {
            let section = ident(file, inner.next().expect("section"));
            ItemKind::Block {
                section,
                body: record(file, inner.next().expect("block body")),
            }
        }
        Rule::loss_decl => {
            inner.next();
            let kind = step(file, inner.next().expect("loss kind"));
            let mut terms = Vec::new();
            let mut combine = None;
            for pair in inner {
                match pair.as_rule() {
                    Rule::term => terms.push(term(file, pair)),
                    Rule::combine => {
                        let mut parts = pair.into_inner();
                        parts.next();
                        combine = Some(step(file, parts.next().expect("combine value")));
                    }
                    _ => {}
                }
            }
            ItemKind::Loss {
                kind,
                terms,
                combine,
            }
        }
        Rule::binding => {
            let name = ident(file, inner.next().expect("binding name"));
            ItemKind::Binding {
                name,
                value: expr(file, inner.next().expect("binding value")),
            }
        }
        other => unreachable!("the grammar has no statement {other:?}"),
    };
    Item { kind, span }
}

fn term(file: FileId, pair: Pair<'_, Rule>) -> Term {
    let span = span_of(file, &pair);
    let mut symmetric = false;
    let mut sides = Vec::new();
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::symmetric => symmetric = true,
            _ => sides.push(expr(file, part)),
        }
    }
    let right = sides.pop().expect("term right side");
    let left = sides.pop().expect("term left side");
    Term {
        symmetric,
        left,
        right,
        span,
    }
}

fn record(file: FileId, pair: Pair<'_, Rule>) -> Record {
    let span = span_of(file, &pair);
    let entries = pair
        .into_inner()
        .map(|entry| {
            let mut parts = entry.into_inner();
            let key = ident(file, parts.next().expect("entry key"));
            let value = parts.next().expect("entry value");
            let value = match value.as_rule() {
                Rule::record => {
                    let span = span_of(file, &value);
                    Expr {
                        kind: ExprKind::Record(record(file, value)),
                        span,
                    }
                }
                _ => expr(file, value),
            };
            Entry { key, value }
        })
        .collect();
    Record { entries, span }
}

fn expr(file: FileId, pair: Pair<'_, Rule>) -> Expr {
    let span = span_of(file, &pair);
    let mut steps: Vec<Expr> = pair.into_inner().map(|p| step(file, p)).collect();
    if steps.len() == 1 {
        steps.pop().expect("one step")
    } else {
        Expr {
            kind: ExprKind::Chain(steps),
            span,
        }
    }
}

fn number(file: FileId, pair: Pair<'_, Rule>) -> Expr {
    let span = span_of(file, &pair);
    let text = pair.as_str().to_string();
    // The grammar only admits decimal literals, which always parse (huge ones as infinity).
    let value = text.parse::<f64>().unwrap_or(f64::NAN);
    Expr {
        kind: ExprKind::Number { value, text },
        span,
    }
}

fn step(file: FileId, pair: Pair<'_, Rule>) -> Expr {
    let span = span_of(file, &pair);
    let kind = match pair.as_rule() {
        Rule::expr => return expr(file, pair),
        Rule::fa_step => {
            let mut inner = pair.into_inner();
            inner.next();
            ExprKind::Fa(Box::new(step(file, inner.next().expect("fa method"))))
        }
        Rule::per => {
            let mut inner = pair.into_inner();
            let value = number(file, inner.next().expect("per value"));
            inner.next();
            let per = number(file, inner.next().expect("per count"));
            ExprKind::Per {
                value: Box::new(value),
                per: Box::new(per),
            }
        }
        Rule::number => return number(file, pair),
        Rule::string => ExprKind::Str(unescape(
            pair.into_inner().next().map_or("", |p| p.as_str()),
        )),
        Rule::boolean => ExprKind::Bool(pair.as_str() == "true"),
        Rule::var => ExprKind::Var(pair.as_str()[1..].to_string()),
        Rule::call => {
            let mut inner = pair.into_inner();
            let name = ident(file, inner.next().expect("call name"));
            let args = inner
                .map(|arg| {
                    let parts: Vec<Pair<'_, Rule>> = arg.into_inner().collect();
                    match parts.len() {
                        2 => {
                            let mut parts = parts.into_iter();
                            let name = ident(file, parts.next().expect("arg name"));
                            Arg {
                                name: Some(name),
                                value: expr(file, parts.next().expect("arg value")),
                            }
                        }
                        _ => Arg {
                            name: None,
                            value: expr(file, parts.into_iter().next().expect("arg value")),
                        },
                    }
                })
                .collect();
            ExprKind::Call { name, args }
        }
        Rule::tuple => ExprKind::Tuple(pair.into_inner().map(|p| expr(file, p)).collect()),
        Rule::list => ExprKind::List(pair.into_inner().map(|p| expr(file, p)).collect()),
        Rule::record => ExprKind::Record(record(file, pair)),
        Rule::ident | Rule::name => ExprKind::Name(pair.as_str().to_string()),
        other => unreachable!("the grammar has no step {other:?}"),
    };
    Expr { kind, span }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}
