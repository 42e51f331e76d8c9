// Starts `fa lsp` for .fa files through vscode-languageclient.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate() {
  const command = vscode.workspace.getConfiguration("fa").get("path", "fa");
  client = new LanguageClient(
    "fa",
    "fa language server",
    { command, args: ["lsp"] },
    { documentSelector: [{ scheme: "file", language: "fa" }] }
  );
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
