//! Line comments of a source text, found by a lexical scan so `fmt` can keep them.

/// One `// ...` comment: its byte range (the text without the line break).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// True when code precedes the comment on its line (a trailing comment).
    pub trailing: bool,
}

/// Every line comment of `text`, in order, skipping `//` inside strings.
pub fn comments(text: &str) -> Vec<Comment> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    let mut in_string = false;
    let mut code_on_line = false;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                b'\\' => index += 1,
                b'"' => in_string = false,
                b'\n' => {
                    in_string = false;
                    code_on_line = false;
                }
                _ => {}
            }
            index += 1;
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                code_on_line = true;
            }
            b'\n' => code_on_line = false,
            b'/' if bytes.get(index + 1) == Some(&b'/') => {
                let start = index;
                while index < bytes.len() && bytes[index] != b'\n' {
                    index += 1;
                }
                let body = text[start..index].trim_end().to_string();
                out.push(Comment {
                    start,
                    end: index,
                    text: body,
                    trailing: code_on_line,
                });
                continue;
            }
            b' ' | b'\t' | b'\r' => {}
            _ => code_on_line = true,
        }
        index += 1;
    }
    out
}
