// A session with `pcdsl lsp` driven by Microsoft's own LSP client library (vscode-jsonrpc and
// vscode-languageserver-protocol, what VS Code's extension uses), not by Python: initialize, open
// a model with an unknown name, wait for the diagnostic, hover over a state, shut down. Prints
// one JSON object for test_language_server.py to check. Run with NODE_PATH naming the
// extension's node_modules (editors/vscode after `npm install`).
"use strict";

const { spawn } = require("child_process");
const rpc = require("vscode-jsonrpc/node");
const protocol = require("vscode-languageserver-protocol");

const [python, text, uri, line, character] = process.argv.slice(2);

async function main() {
  const server = spawn(python, ["-m", "pcdsl", "lsp"], { stdio: ["pipe", "pipe", "inherit"] });
  const connection = rpc.createMessageConnection(
    new rpc.StreamMessageReader(server.stdout), new rpc.StreamMessageWriter(server.stdin));
  const diagnostics = new Promise((resolve) =>
    connection.onNotification(protocol.PublishDiagnosticsNotification.type, resolve));
  connection.listen();
  const initialized = await connection.sendRequest(protocol.InitializeRequest.type,
    { processId: process.pid, rootUri: null, capabilities: {} });
  connection.sendNotification(protocol.InitializedNotification.type, {});
  connection.sendNotification(protocol.DidOpenTextDocumentNotification.type,
    { textDocument: { uri, languageId: "pcdsl", version: 1, text } });
  const published = await diagnostics;
  const hover = await connection.sendRequest(protocol.HoverRequest.type,
    { textDocument: { uri }, position: { line: Number(line), character: Number(character) } });
  await connection.sendRequest(protocol.ShutdownRequest.type);
  connection.sendNotification(protocol.ExitNotification.type);
  const code = await new Promise((resolve) => server.on("exit", resolve));
  console.log(JSON.stringify({ capabilities: initialized.capabilities, published, hover, code }));
  connection.dispose();
}

main().catch((error) => { console.error(error); process.exit(1); });
