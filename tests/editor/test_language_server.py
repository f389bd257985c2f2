# ---------------------------------------------------------------------------------------------
# The language server in a real session: `python -m pcdsl lsp` started as editors start it, and
# driven over stdio by pygls's LSP client (JSON-RPC, as VS Code speaks it): initialize, open a
# file with an error, receive the diagnostic at the place the file itself states, hover, go to a
# macro's definition, fix the error as you type, format, shut down.
#
# Oracles: the invalid model's `# expect:` line; positions found by regular expressions here;
# UTF-16 columns counted here for a line with characters outside the BMP.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import asyncio
import re
import sys

import pytest

pytest.importorskip("pygls", reason="the language server needs pygls (pip install \"pcdsl[lsp]\")")

from lsprotocol import types                              # noqa: E402
from pygls.lsp.client import LanguageClient               # noqa: E402

from compiler.cases import invalid_cases                  # noqa: E402
from pcdsl.fmt import format_text                         # noqa: E402

CASE = next(c for c in invalid_cases() if c.id.startswith("E101_init_gain_state"))
URI = "file:///tmp/pcdsl-lsp-session/model.pc"
TIMEOUT = 60


def _where(text: str, pattern: str) -> types.Position:
    match = re.search(pattern, text, flags=re.MULTILINE)
    start = match.start(1)
    return types.Position(line=text.count("\n", 0, start), character=start - (text.rfind("\n", 0, start) + 1))


class Session:
    """A client with the server's diagnostics collected per document version."""

    def __init__(self):
        self.client = LanguageClient("pcdsl-test", "1")
        self.diagnostics: asyncio.Queue = asyncio.Queue()
        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: types.PublishDiagnosticsParams):
            self.diagnostics.put_nowait(params)

    async def next_diagnostics(self) -> types.PublishDiagnosticsParams:
        return await asyncio.wait_for(self.diagnostics.get(), TIMEOUT)

    def document(self) -> types.TextDocumentIdentifier:
        return types.TextDocumentIdentifier(uri=URI)


async def _session() -> dict:
    session = Session()
    client = session.client
    await client.start_io(sys.executable, "-m", "pcdsl", "lsp")
    seen: dict = {}
    try:
        result = await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            process_id=None, capabilities=types.ClientCapabilities(
                general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16])))),
            TIMEOUT)
        seen["capabilities"] = result.capabilities
        client.initialized(types.InitializedParams())

        # open a file with an error
        text = CASE.path.read_text()
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=URI, language_id="pcdsl", version=1, text=text)))
        seen["opened"] = await session.next_diagnostics()
        seen["hover_broken"] = await client.text_document_hover_async(types.HoverParams(
            text_document=session.document(), position=_where(text, r"^\s*state\s+(h1)")))

        # fix it by typing (the server asks for whole documents: TextDocumentSyncKind.Full)
        seen["sync"] = result.capabilities.text_document_sync
        fixed = text.replace("init_gain(h2=", "init_gain(h1=")
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)]))
        seen["fixed"] = await session.next_diagnostics()
        seen["hover_state"] = await client.text_document_hover_async(types.HoverParams(
            text_document=session.document(), position=_where(fixed, r"dense\((h1), 10\)")))
        seen["definition_state"] = await client.text_document_definition_async(types.DefinitionParams(
            text_document=session.document(), position=_where(fixed, r"dense\((h1), 10\)")))
        seen["symbols"] = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
            text_document=session.document()))

        # a macro, laid out messily, with a comment holding characters outside the BMP before an
        # error on the same line: UTF-16 counts each of them as two units
        messy = ("model m {\n  input x : [4]\n  def   layer(src,n)=relu(dense(src,n)+bias)\n"
                 "  state h : [8]>=0 ~ layer(x,8)\n  output o : [2] ~ dense(h, 2)\n  label y : [2]\n"
                 "  cost squared_error(o, y)\n}\n")
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=3),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=messy)]))
        seen["messy"] = await session.next_diagnostics()
        seen["messy_text"] = messy
        seen["definition_macro"] = await client.text_document_definition_async(types.DefinitionParams(
            text_document=session.document(), position=_where(messy, r"~ (layer)\(")))
        seen["completion"] = await client.text_document_completion_async(types.CompletionParams(
            text_document=session.document(), position=_where(messy, r"~ dense\(()h, 2\)")))
        seen["formatting"] = await client.text_document_formatting_async(types.DocumentFormattingParams(
            text_document=session.document(), options=types.FormattingOptions(tab_size=2, insert_spaces=True)))
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=4),
            content_changes=[types.TextDocumentContentChangeWholeDocument(
                text=messy + 'train {\n  data "😀😀" $\n}\n')]))
        seen["wide"] = await session.next_diagnostics()

        # a form feed on a line of its own (whitespace to the language; a line break to
        # str.splitlines, not to the protocol): the error below it keeps its line
        feed = "model m {\n  input x : [4]\n\x0c\n  label y : [2]\n  output o : [2] ~ dense(zz, 2)\n" \
               "  cost squared_error(o, y)\n}\n"
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=5),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=feed)]))
        seen["feed"] = await session.next_diagnostics()
        seen["last_line"] = await client.text_document_completion_async(types.CompletionParams(
            text_document=session.document(), position=types.Position(line=feed.count("\n"), character=0)))
        # a Windows file already in the canonical layout needs no edit
        crlf = format_text(seen["messy_text"]).replace("\n", "\r\n")
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=6),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=crlf)]))
        seen["crlf"] = await session.next_diagnostics()
        seen["crlf_formatting"] = await client.text_document_formatting_async(types.DocumentFormattingParams(
            text_document=session.document(), options=types.FormattingOptions(tab_size=2, insert_spaces=True)))

        client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=session.document()))
        seen["closed"] = await session.next_diagnostics()
        await asyncio.wait_for(client.shutdown_async(None), TIMEOUT)
        client.exit(None)
        await asyncio.wait_for(client.stop(), TIMEOUT)
        seen["returncode"] = client._server.returncode
    finally:
        if client._server is not None and client._server.returncode is None:
            client._server.kill()
    return seen


@pytest.fixture(scope="module")
def session() -> dict:
    return asyncio.run(_session())


def test_the_server_announces_what_it_answers(session):
    capabilities = session["capabilities"]
    assert capabilities.hover_provider and capabilities.definition_provider
    assert capabilities.document_symbol_provider and capabilities.document_formatting_provider
    assert capabilities.completion_provider is not None
    assert capabilities.position_encoding == types.PositionEncodingKind.Utf16
    assert session["sync"].change == types.TextDocumentSyncKind.Full


def test_opening_a_file_with_an_error_gives_its_diagnostic_at_the_stated_range(session):
    published = session["opened"]
    assert published.uri == URI and published.version == 1
    (diagnostic,) = published.diagnostics
    assert diagnostic.code == CASE.code and diagnostic.source == "pcdsl"
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert (diagnostic.range.start.line, diagnostic.range.start.character) == (CASE.line - 1, CASE.column - 1)
    assert (diagnostic.range.end.line, diagnostic.range.end.character) == (CASE.line - 1, CASE.column + 1)  # `h2`
    assert "unknown name `h2`" in diagnostic.message and CASE.hint in diagnostic.message


def test_hover_while_the_file_has_an_error_shows_the_statement_only(session):
    value = session["hover_broken"].contents.value
    assert "state  h1 : [32] >= 0" in value and "once the model checks" in value


def test_lines_are_the_protocols_even_after_a_form_feed(session):
    (diagnostic,) = session["feed"].diagnostics
    assert diagnostic.code == "E101"
    assert (diagnostic.range.start.line, diagnostic.range.start.character) == (4, 25)
    # the empty line after the last "\n" is between the blocks: the file's keywords only
    assert {item.label for item in session["last_line"].items} == {"model", "train"}


def test_a_windows_file_keeps_its_line_ends(session):
    assert not session["crlf"].diagnostics
    assert session["crlf_formatting"] is not None and len(session["crlf_formatting"]) == 0   # no edit


def test_typing_the_fix_clears_the_diagnostic(session):
    assert session["fixed"].version == 2 and not session["fixed"].diagnostics


def test_hover_on_a_state_gives_its_shape_and_derived_update_rule(session):
    hover = session["hover_state"]
    assert "**state** `h1` : `[32]`, domain `>= 0`" in hover.contents.value
    assert "derived update" in hover.contents.value and "h1 <- relu(" in hover.contents.value
    assert hover.range.end.character - hover.range.start.character == 2


def test_definition_of_a_state_and_of_a_macro(session):
    text = CASE.path.read_text()
    location = session["definition_state"]
    assert location.uri == URI and location.range.start == _where(text, r"^\s*state\s+(h1)")
    macro = session["definition_macro"]
    assert macro.range.start == _where(session["messy_text"], r"def\s+(layer)\(")


def test_completion_offers_the_declared_names_macros_and_operators(session):
    items = {item.label: item for item in session["completion"].items}
    assert {"x", "h", "o", "layer", "dense", "conv", "bias"} <= set(items)
    assert items["layer"].kind == types.CompletionItemKind.Function and items["layer"].insert_text == "layer("
    assert items["h"].kind == types.CompletionItemKind.Variable


def test_outline(session):
    assert [(s.name, s.detail) for s in session["symbols"]] == [
        ("x", "input"), ("y", "label"), ("h1", "state"), ("o", "output")]
    text = CASE.path.read_text()
    state = session["symbols"][2]
    assert state.selection_range.start == _where(text, r"^\s*state\s+(h1)")      # the name ...
    line = text.split("\n")[state.range.start.line]
    assert state.range.start.character == line.index("state") and state.range.end.line == state.range.start.line
    assert state.range.end.character == len(line.rstrip())                   # ... in its whole statement


def test_formatting_gives_the_canonical_layout(session):
    assert not session["messy"].diagnostics
    (edit,) = session["formatting"]
    assert edit.range.start == types.Position(line=0, character=0)
    lines = session["messy_text"].split("\n")          # the edit ends at the text's very end
    assert edit.range.end == types.Position(line=len(lines) - 1, character=len(lines[-1]))
    assert edit.new_text == format_text(session["messy_text"])


def test_columns_are_counted_in_utf16_units(session):
    (diagnostic,) = session["wide"].diagnostics
    assert diagnostic.code == "E002"
    assert diagnostic.range.start.line == session["messy_text"].count("\n") + 1
    line = '  data "😀😀" $'
    assert diagnostic.range.start.character == len(line.encode("utf-16-le")) // 2 - 1   # 2 units per 😀


def test_closing_clears_the_diagnostics_and_the_server_exits_cleanly(session):
    assert not session["closed"].diagnostics
    assert session["returncode"] == 0


def test_the_vscode_extension_starts_this_server():
    import json

    from click.testing import CliRunner

    from helpers import ROOT
    from pcdsl.cli.main import main
    vscode = ROOT / "editors" / "vscode"
    manifest = json.loads((vscode / "package.json").read_text())
    assert (vscode / manifest["main"]).exists() and manifest["activationEvents"] == ["onLanguage:pcdsl"]
    command = manifest["contributes"]["configuration"]["properties"]["pcdsl.server.command"]["default"]
    assert command[0] == "pcdsl" and CliRunner().invoke(main, [*command[1:], "--help"]).exit_code == 0
    assert "vscode-languageclient" in manifest["dependencies"]


# -- the same server through Microsoft's client library (what the VS Code extension uses) ------
def test_microsofts_client_library_gets_the_same_answers():
    import json
    import os
    import shutil
    import subprocess

    from helpers import ROOT
    modules = ROOT / "editors" / "vscode" / "node_modules"
    if shutil.which("node") is None or not (modules / "vscode-jsonrpc").is_dir():
        pytest.skip("needs Node.js and the extension's packages: cd editors/vscode && npm install")
    text = CASE.path.read_text()
    state = _where(text, r"^\s*state\s+(h1)")
    result = subprocess.run(["node", str(ROOT / "tests" / "editor" / "vscode_client.js"), sys.executable, text, URI,
                             str(state.line), str(state.character)],
                            capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, "NODE_PATH": str(modules)})
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    (diagnostic,) = answer["published"]["diagnostics"]
    assert diagnostic["code"] == CASE.code
    assert diagnostic["range"]["start"] == {"line": CASE.line - 1, "character": CASE.column - 1}
    assert "once the model checks" in answer["hover"]["contents"]["value"]
    assert answer["hover"]["range"]["start"] == {"line": state.line, "character": state.character}
    assert answer["code"] == 0
