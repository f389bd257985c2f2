// The pcdsl extension: highlighting comes from the grammar in syntaxes/; everything else
// (diagnostics as you type, hover, go to definition, outline, formatting) from pcdsl's own
// language server, `pcdsl lsp`, started here over stdio. The command is a setting, so that a
// virtual environment's pcdsl can be named: "pcdsl.server.command": ["/path/to/venv/bin/pcdsl", "lsp"].
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("pcdsl").get("server.command", ["pcdsl", "lsp"]);
  const server = { command, args, transport: TransportKind.stdio };
  client = new LanguageClient("pcdsl", "pcdsl language server", server, {
    documentSelector: [{ scheme: "file", language: "pcdsl" }, { scheme: "untitled", language: "pcdsl" }],
  });
  context.subscriptions.push(client);
  return client.start().catch((error) => {
    vscode.window.showErrorMessage(
      `pcdsl: cannot start the language server (${command} ${args.join(" ")}): ${error.message}. ` +
      'Install it with pip install "pcdsl[lsp]", or set "pcdsl.server.command".');
  });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
