//! `fa lsp`: a language server for `.fa` files over standard input and output. It runs
//! the front end (never libtorch) on the editor's buffers and answers with the diagnostics
//! of `fa check`, hover, definitions, an outline, `fa fmt` formatting and completion.
//!
//! ```text
//! editor ─JSON-RPC─▶ lsp-server loop ─▶ workspace (open buffers) ─▶ analysis (recovering
//!   parse, compile with the buffers as `use`d files) ─▶ diagnostics · hover · definition
//!   · symbols · formatting · completion
//! ```

mod analysis;
mod completion;
mod cursor;
mod hover;
mod navigation;
pub mod position;
mod recover;
mod words;
mod workspace;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{
    Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest, Request as _,
};
use lsp_types::{
    CompletionOptions, CompletionResponse, DocumentSymbolResponse, GotoDefinitionResponse,
    InitializeParams, OneOf, Position, Range, ServerCapabilities, ServerInfo,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit, Url,
};

use workspace::Workspace;

/// Why the server stopped other than by the client's `exit`.
#[derive(Debug, thiserror::Error)]
pub enum LspError {
    #[error("language server protocol: {0}")]
    Protocol(#[from] lsp_server::ProtocolError),
    #[error("cannot encode a message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the connection to the editor closed")]
    Closed,
    #[error("reading or writing standard input and output: {0}")]
    Io(#[from] std::io::Error),
}

/// What the server offers, announced in its reply to `initialize`.
pub fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(lsp_types::HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["(".into(), " ".into(), "{".into(), "[".into()]),
            ..CompletionOptions::default()
        }),
        ..ServerCapabilities::default()
    }
}

/// Serves one editor over standard input and output until it says `exit`.
pub fn run_stdio() -> Result<(), LspError> {
    let (connection, threads) = Connection::stdio();
    serve(&connection)?;
    drop(connection);
    threads.join()?;
    Ok(())
}

/// The initialisation handshake, then the message loop, on any connection (tests use an
/// in-memory one).
pub fn serve(connection: &Connection) -> Result<(), LspError> {
    let initialize = serde_json::json!({
        "capabilities": capabilities(),
        "serverInfo": ServerInfo { name: "fa".into(), version: Some(env!("CARGO_PKG_VERSION").into()) },
    });
    let (id, params) = connection.initialize_start()?;
    let _params: InitializeParams = serde_json::from_value(params)?;
    connection.initialize_finish(id, initialize)?;
    let mut workspace = Workspace::default();
    for message in &connection.receiver {
        match message {
            Message::Request(request) => {
                if connection.handle_shutdown(&request)? {
                    return Ok(());
                }
                let response = answer(&workspace, request);
                send(connection, Message::Response(response))?;
            }
            Message::Notification(notification) => {
                if notify(&mut workspace, notification) {
                    for params in workspace.diagnostics() {
                        let message = Notification::new(PublishDiagnostics::METHOD.into(), params);
                        send(connection, Message::Notification(message))?;
                    }
                }
            }
            Message::Response(_) => {}
        }
    }
    Err(LspError::Closed)
}

fn send(connection: &Connection, message: Message) -> Result<(), LspError> {
    connection
        .sender
        .send(message)
        .map_err(|_| LspError::Closed)
}

/// Applies a notification; true when the open files changed (diagnostics to publish).
fn notify(workspace: &mut Workspace, notification: Notification) -> bool {
    match notification.method.as_str() {
        DidOpenTextDocument::METHOD => {
            let Ok(params) =
                serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(notification.params)
            else {
                return false;
            };
            let document = params.text_document;
            workspace.open(document.uri, document.text, document.version);
            true
        }
        DidChangeTextDocument::METHOD => {
            let Ok(params) = serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(
                notification.params,
            ) else {
                return false;
            };
            // Full synchronisation: the last change holds the whole text.
            let Some(change) = params.content_changes.into_iter().last() else {
                return false;
            };
            workspace.change(
                &params.text_document.uri,
                change.text,
                params.text_document.version,
            );
            true
        }
        DidCloseTextDocument::METHOD => {
            let Ok(params) = serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(
                notification.params,
            ) else {
                return false;
            };
            workspace.close(&params.text_document.uri);
            true
        }
        _ => false,
    }
}

/// The response to one request; an unknown method or bad parameters get an error response.
fn answer(workspace: &Workspace, request: Request) -> Response {
    let id = request.id.clone();
    let result = match request.method.as_str() {
        HoverRequest::METHOD => with_position(workspace, request, |uri, document, offset| {
            let _ = uri;
            serde_json::to_value(hover::hover(document, offset))
        }),
        GotoDefinition::METHOD => with_position(workspace, request, |uri, document, offset| {
            serde_json::to_value(
                navigation::definition(uri, document, offset).map(GotoDefinitionResponse::Scalar),
            )
        }),
        Completion::METHOD => with_position(workspace, request, |_, document, offset| {
            serde_json::to_value(CompletionResponse::Array(completion::complete(
                document, offset,
            )))
        }),
        DocumentSymbolRequest::METHOD => with_document(workspace, request, |_, document| {
            serde_json::to_value(DocumentSymbolResponse::Nested(navigation::symbols(
                document,
            )))
        }),
        Formatting::METHOD => with_document(workspace, request, |_, document| {
            serde_json::to_value(format(&document.text))
        }),
        method => Err(error(
            id.clone(),
            ErrorCode::MethodNotFound,
            format!("no method {method}"),
        )),
    };
    match result {
        Ok(value) => Response::new_ok(id, value),
        Err(response) => response,
    }
}

fn error(id: RequestId, code: ErrorCode, message: String) -> Response {
    Response::new_err(id, code as i32, message)
}

type Answer = Result<serde_json::Value, Response>;

/// Runs `answer` on the open document the request names.
fn with_document(
    workspace: &Workspace,
    request: Request,
    answer: impl FnOnce(&Url, &workspace::Document) -> serde_json::Result<serde_json::Value>,
) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        text_document: lsp_types::TextDocumentIdentifier,
    }
    let id = request.id.clone();
    let params: Params = serde_json::from_value(request.params)
        .map_err(|e| error(id.clone(), ErrorCode::InvalidParams, e.to_string()))?;
    let uri = params.text_document.uri;
    let document = workspace.documents.get(&uri).ok_or_else(|| {
        error(
            id.clone(),
            ErrorCode::InvalidParams,
            format!("{uri} is not open"),
        )
    })?;
    answer(&uri, document).map_err(|e| error(id, ErrorCode::InternalError, e.to_string()))
}

/// Runs `answer` on the open document and byte offset the request names.
fn with_position(
    workspace: &Workspace,
    request: Request,
    answer: impl FnOnce(&Url, &workspace::Document, usize) -> serde_json::Result<serde_json::Value>,
) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Params {
        text_document: lsp_types::TextDocumentIdentifier,
        position: Position,
    }
    let id = request.id.clone();
    let params: Params = serde_json::from_value(request.params)
        .map_err(|e| error(id.clone(), ErrorCode::InvalidParams, e.to_string()))?;
    let uri = params.text_document.uri;
    let document = workspace.documents.get(&uri).ok_or_else(|| {
        error(
            id.clone(),
            ErrorCode::InvalidParams,
            format!("{uri} is not open"),
        )
    })?;
    let offset = position::offset(&document.text, params.position);
    answer(&uri, document, offset).map_err(|e| error(id, ErrorCode::InternalError, e.to_string()))
}

/// `fa fmt` of the whole text as one edit; `None` (no edit) when it has syntax errors,
/// which the diagnostics already show.
fn format(text: &str) -> Option<Vec<TextEdit>> {
    let formatted = fa_lang::fmt::format_source(text).ok()?;
    if formatted == text {
        return Some(Vec::new());
    }
    let end = position::position(text, text.len());
    Some(vec![TextEdit::new(
        Range::new(Position::new(0, 0), end),
        formatted,
    )])
}
