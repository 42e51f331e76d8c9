//! `fa lsp` end to end: the real `fa` binary spoken to over the language server protocol,
//! as an editor does: diagnostics with their codes and ranges (in this file and in a `use`d
//! file edited but not saved), hover, definition, completion, symbols and formatting.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use serde_json::{json, Value};

/// The main file: a model that `use`s `common.fa` for its projector, with a misspelt name
/// (`anchr`) in the loss, and irregular spacing for the formatter.
const BROKEN: &str = "// é𝔽 → a comment outside ASCII
model t
use \"common.fa\"
data { format: idx, path: \"fashion-mnist\", limit: 1000 }
pipeline p = [crop, flip]
encoder   f = convnet(16, 32)
predictor q = mlp(64, 32)
anchor = view(p) -> f -> g -> q
positive = view(p) -> f -> g -> stopgrad
augmented = positive -> fa mask(rate: 0.2)
loss infonce(tau: 0.2) { anchr ~ positive, anchor ~ augmented }
";

const COMMON: &str = "projector g = mlp(64, 32)\n";

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start(folder: &Path) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fa"))
            .arg("lsp")
            // Served by `fa` alone: no backend needed.
            .env("FA_TORCH", "/nonexistent/fa-torch")
            .current_dir(folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fa lsp starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, messages) = channel();
        std::thread::spawn(move || loop {
            let mut length = None;
            loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(value) = line.strip_prefix("Content-Length: ") {
                    length = Some(value.parse::<usize>().expect("a length"));
                }
            }
            let mut body = vec![0; length.expect("a Content-Length header")];
            stdout.read_exact(&mut body).expect("the whole body");
            if sender
                .send(serde_json::from_slice(&body).expect("JSON"))
                .is_err()
            {
                return;
            }
        });
        Client {
            child,
            stdin,
            messages,
            next_id: 1,
        }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn receive(&self) -> Value {
        self.messages
            .recv_timeout(Duration::from_secs(20))
            .expect("the server answers within 20 s")
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let message = self.receive();
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The diagnostics published for `uri` at `version` (every open file's are published
    /// after each change, so earlier versions' are skipped).
    fn diagnostics_for(&self, uri: &str, version: i64) -> Vec<Value> {
        loop {
            let message = self.receive();
            if message["method"] == "textDocument/publishDiagnostics"
                && message["params"]["uri"] == uri
                && message["params"]["version"] == version
            {
                return message["params"]["diagnostics"].as_array().unwrap().clone();
            }
        }
    }
}

fn at(uri: &str, line: u32, character: u32) -> Value {
    json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})
}

fn range(line: u32, start: u32, end: u32) -> Value {
    json!({"start": {"line": line, "character": start}, "end": {"line": line, "character": end}})
}

fn hover_text(result: &Value) -> String {
    result["contents"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_editor_gets_diagnostics_hover_definition_completion_symbols_and_formatting() {
    let folder = tempfile::tempdir().unwrap();
    let main_path = folder.path().join("main.fa");
    let common_path = folder.path().join("common.fa");
    std::fs::write(&main_path, BROKEN).unwrap();
    std::fs::write(&common_path, COMMON).unwrap();
    let main = url_of(&main_path);
    let common = url_of(&common_path);

    let mut client = Client::start(folder.path());
    let initialized = client.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    assert_eq!(initialized["capabilities"]["hoverProvider"], true);
    client.notify("initialized", json!({}));

    // Opening a file with an error: the diagnostic of `fa check`, code and range.
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": main, "languageId": "fa", "version": 1, "text": BROKEN}}),
    );
    let diagnostics = client.diagnostics_for(&main, 1);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(diagnostics[0]["code"], "fa::resolve::unknown_value");
    assert_eq!(diagnostics[0]["severity"], 1);
    // `anchr` on line 10, after "loss infonce(tau: 0.2) { " (25 characters).
    assert_eq!(diagnostics[0]["range"], range(10, 25, 30));
    assert!(
        diagnostics[0]["message"]
            .as_str()
            .unwrap()
            .contains("help: did you mean `anchor`?"),
        "{diagnostics:?}"
    );

    // Fixing it clears the diagnostics.
    let fixed = BROKEN.replace("anchr", "anchor");
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": main, "version": 2}, "contentChanges": [{"text": fixed}]}),
    );
    assert_eq!(client.diagnostics_for(&main, 2), Vec::<Value>::new());

    // Hover: a value's shape, a module's parameters, a parameter's default, a word's doc.
    let anchor = hover_text(&client.request("textDocument/hover", at(&main, 7, 2)));
    assert!(anchor.contains("[N,32] (width 32)"), "{anchor}");
    // convnet(16, 32) on one channel: 3×3 convolutions without bias and batch norms,
    // 1·16·9 + 2·16 + 16·32·9 + 2·32 = 144 + 32 + 4,608 + 64 = 4,848.
    let encoder = hover_text(&client.request("textDocument/hover", at(&main, 5, 10)));
    assert!(encoder.contains("4,848 trainable parameters"), "{encoder}");
    assert!(encoder.contains("[N,1,28,28] → [N,32]"), "{encoder}");
    let rate = hover_text(&client.request("textDocument/hover", at(&main, 9, 33)));
    assert!(
        rate.contains("`rate`") && rate.contains("default: `0.2`"),
        "{rate}"
    );
    let crop = hover_text(&client.request("textDocument/hover", at(&main, 4, 15)));
    assert!(crop.contains("random resized crop"), "{crop}");

    // Definition: a pipeline in this file, a module in the used file, the used file itself.
    let pipeline = client.request("textDocument/definition", at(&main, 7, 14));
    assert_eq!(pipeline["uri"], main.as_str());
    assert_eq!(pipeline["range"], range(4, 9, 10));
    let projector = client.request("textDocument/definition", at(&main, 7, 25));
    assert_eq!(projector["uri"], common.as_str());
    assert_eq!(projector["range"], range(0, 10, 11));
    let used = client.request("textDocument/definition", at(&main, 2, 7));
    assert_eq!(used["uri"], common.as_str());

    // Completion: FA methods after `fa`, a method's parameters inside its parentheses.
    let labels = |result: Value| -> Vec<String> {
        result
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["label"].as_str().unwrap().to_string())
            .collect()
    };
    let methods = labels(client.request("textDocument/completion", at(&main, 9, 27)));
    assert!(
        ["nn", "mask", "mixup", "none"]
            .iter()
            .all(|m| methods.contains(&m.to_string())),
        "{methods:?}"
    );
    let params = labels(client.request("textDocument/completion", at(&main, 9, 32)));
    assert_eq!(params, ["rate", "k"]);
    let keywords = labels(client.request("textDocument/completion", at(&main, 11, 0)));
    assert!(keywords.contains(&"pipeline".to_string()), "{keywords:?}");

    // Symbols: the outline of the file.
    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": main}}),
    );
    let names: Vec<&str> = symbols
        .as_array()
        .unwrap()
        .iter()
        .map(|symbol| symbol["name"].as_str().unwrap())
        .collect();
    for name in [
        "t",
        "common.fa",
        "data",
        "p",
        "f",
        "q",
        "anchor",
        "positive",
        "augmented",
        "loss",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    // Formatting: one edit holding what `fa fmt` writes.
    let edits = client.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": main}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    let expected = fa_lang::fmt::format_source(&fixed).unwrap();
    assert_ne!(expected, fixed, "the fixture is not formatted");
    assert_eq!(edits.as_array().unwrap().len(), 1, "{edits}");
    assert_eq!(edits[0]["newText"], expected.as_str());
    assert_eq!(
        edits[0]["range"]["start"],
        json!({"line": 0, "character": 0})
    );

    // A used file edited in the editor (not saved): the file that uses it is compiled
    // against the buffer, and the problem is published for the used file.
    client.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": common, "languageId": "fa", "version": 1, "text": COMMON}}),
    );
    assert_eq!(client.diagnostics_for(&common, 1), Vec::<Value>::new());
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": common, "version": 2},
               "contentChanges": [{"text": "projector g = mlpp(64, 32)\n"}]}),
    );
    let in_common = client.diagnostics_for(&common, 2);
    assert_eq!(in_common.len(), 1, "{in_common:?}");
    assert_eq!(in_common[0]["code"], "fa::resolve::unknown_module_kind");
    assert_eq!(in_common[0]["range"], range(0, 14, 18));

    // A syntax error does not hide the rest: the outline keeps the statements that parse.
    let typing = fixed.replace("predictor q = mlp(64, 32)", "predictor q = mlp(64,");
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": main, "version": 3}, "contentChanges": [{"text": typing}]}),
    );
    let syntax = client.diagnostics_for(&main, 3);
    assert!(
        !syntax.is_empty()
            && syntax
                .iter()
                .all(|d| d["code"].as_str().unwrap().starts_with("fa::syntax")),
        "{syntax:?}"
    );
    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": main}}),
    );
    assert!(symbols.as_array().unwrap().len() >= 8, "{symbols}");

    client.request("shutdown", Value::Null);
    client.notify("exit", Value::Null);
    let status = client.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

fn url_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap();
    format!("file://{}", path.display())
}

#[test]
fn the_textmate_grammar_is_json_and_highlights_every_keyword_of_the_pest_grammar() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let grammar: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("editors/vscode/syntaxes/fa.tmLanguage.json")).unwrap(),
    )
    .expect("the TextMate grammar is JSON");
    assert_eq!(grammar["scopeName"], "source.fa");
    let text = grammar.to_string();
    // The words of the pest grammar's `keyword` rule, which the TextMate grammar must know.
    let pest = std::fs::read_to_string(root.join("grammar/fa.pest")).unwrap();
    let rule = pest
        .split("keyword = @{")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("the keyword rule");
    let keywords: Vec<&str> = rule.split('"').skip(1).step_by(2).collect();
    assert!(keywords.len() >= 15, "{keywords:?}");
    for keyword in keywords {
        assert!(
            text.contains(&format!("|{keyword}|"))
                || text.contains(&format!("({keyword}|"))
                || text.contains(&format!("|{keyword})")),
            "`{keyword}` is not highlighted"
        );
    }
}
