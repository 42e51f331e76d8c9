//! Parsing a file being typed: the grammar stops at the first syntax error, so the statement
//! holding it is blanked out and the rest parsed again, until every statement that parses
//! is in the tree and every broken one has its error.

use fa_lang::diag::{sort_and_dedup, Diagnostic};
use fa_lang::syntax::{self, ast::Item};

/// The statements that parse and the syntax errors of those that do not.
#[derive(Debug, Default)]
pub struct Parsed {
    pub items: Vec<Item>,
    pub problems: Vec<Diagnostic>,
}

/// More broken statements than this in one file are not worth separate errors.
const MAX_ROUNDS: usize = 32;

/// Parses `text` as file 0, blanking broken statements one at a time.
pub fn parse(text: &str) -> Parsed {
    let mut working = text.to_string();
    let mut problems = Vec::new();
    for _ in 0..MAX_ROUNDS {
        match syntax::parse_file(0, &working) {
            Ok(file) => {
                sort_and_dedup(&mut problems);
                return Parsed {
                    items: file.items,
                    problems,
                };
            }
            Err(found) => {
                let at = found.first().map_or(0, |problem| problem.span.start);
                problems.extend(found);
                let (start, end) = broken_statement(&working, at);
                if start >= end || working[start..end].trim().is_empty() {
                    break;
                }
                blank(&mut working, start, end);
            }
        }
    }
    sort_and_dedup(&mut problems);
    Parsed {
        items: Vec::new(),
        problems,
    }
}

/// The byte offsets where top-level statements start: lines that begin in the first column
/// with something other than a comment or a closing bracket (the formatter's layout, and
/// how people write `.fa` files).
fn statement_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let first = line.chars().next();
        let opens_statement = first.is_some_and(|c| !c.is_whitespace() && !")]}".contains(c))
            && !line.starts_with("//");
        if opens_statement {
            starts.push(line_start);
        }
        line_start += line.len();
    }
    starts
}

/// The statement to blank for an error at byte `at`: the one holding it, or the one before
/// when that one leaves a bracket open (it swallowed what follows, and the parser reports
/// the error somewhere in the next statement).
fn broken_statement(text: &str, at: usize) -> (usize, usize) {
    let starts = statement_starts(text);
    let Some(index) = starts.iter().rposition(|&start| start <= at) else {
        // Before the first statement (a stray character in the leading comments).
        let end = starts.first().copied().unwrap_or(text.len());
        return (0, end.max(at + 1).min(text.len()));
    };
    let end = starts.get(index + 1).copied().unwrap_or(text.len());
    if index > 0 && bracket_balance(&text[starts[index - 1]..starts[index]]) != 0 {
        return (starts[index - 1], starts[index]);
    }
    (starts[index], end)
}

/// Opening minus closing brackets outside strings and comments.
fn bracket_balance(text: &str) -> i64 {
    let mut balance = 0;
    for line in text.lines() {
        let mut in_string = false;
        let mut previous = ' ';
        for character in line.chars() {
            match character {
                '"' => in_string = !in_string,
                '/' if !in_string && previous == '/' => break,
                '(' | '[' | '{' if !in_string => balance += 1,
                ')' | ']' | '}' if !in_string => balance -= 1,
                _ => {}
            }
            previous = character;
        }
    }
    balance
}

/// Replaces `start..end` with spaces, keeping newlines, so byte offsets (and so spans) of
/// the rest stay where they were.
fn blank(text: &mut String, start: usize, end: usize) {
    let blanked: String = text[start..end]
        .bytes()
        .map(|byte| if byte == b'\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(start..end, &blanked);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fa_lang::syntax::ast::ItemKind;

    fn names(parsed: &Parsed) -> Vec<String> {
        parsed
            .items
            .iter()
            .filter_map(|item| match &item.kind {
                ItemKind::Module { name, .. } | ItemKind::Binding { name, .. } => {
                    Some(name.text.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_broken_statements_give_two_errors_and_the_rest_parses() {
        let text =
            "encoder f = mlp(8)\nprojector g = mlp(4,\nx = view(a) -> f\ny = = 3\nz = x -> g\n";
        let parsed = parse(text);
        assert_eq!(names(&parsed), ["f", "x", "z"], "{parsed:?}");
        assert_eq!(parsed.problems.len(), 2, "{:?}", parsed.problems);
        // The spans point into the text as typed: the first error is on line 2 or 3 (the
        // unclosed call), the second on line 4.
        let line = |offset: usize| text[..offset].matches('\n').count();
        assert!(matches!(line(parsed.problems[0].span.start), 1 | 2));
        assert_eq!(line(parsed.problems[1].span.start), 3);
        assert!(parsed
            .problems
            .iter()
            .all(|p| p.code.starts_with("fa::syntax")));
    }

    #[test]
    fn a_file_that_parses_has_no_problems_and_spans_of_the_source() {
        let text = "// é comment\nencoder f = mlp(8)\n";
        let parsed = parse(text);
        assert!(parsed.problems.is_empty());
        let ItemKind::Module { name, .. } = &parsed.items[0].kind else {
            panic!("{parsed:?}")
        };
        assert_eq!(&text[name.span.start..name.span.end], "f");
    }
}
