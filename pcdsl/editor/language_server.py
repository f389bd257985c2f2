# ---------------------------------------------------------------------------------------------
# The language server (`pcdsl lsp`): pcdsl's own diagnostics as you type, hover, go to
# definition, completion, an outline and formatting, for any editor that speaks the Language Server
# Protocol. Every answer comes from analysis.py; this module only translates between the
# protocol (pygls, lsprotocol) and it: positions in the client's units, ranges, messages.
#
# Diagnostics wait for a short pause in typing (DEBOUNCE_SECONDS) so that a burst of keystrokes
# compiles once; a hover or a jump compiles the current text at once if it has not been yet.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import asyncio
from typing import Optional

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import ServerTextPosition, ServerTextRange

from .. import __version__
from ..diagnostics import PcdslError
from .analysis import Analysis, TextRange, analyse, completions

DEBOUNCE_SECONDS = 0.3

_SYMBOL_KINDS = {
    "size": types.SymbolKind.Constant, "input": types.SymbolKind.Variable, "state": types.SymbolKind.Variable,
    "output": types.SymbolKind.Variable, "label": types.SymbolKind.Variable, "energy": types.SymbolKind.Property,
    "macro": types.SymbolKind.Function,
}


_COMPLETION_KINDS = {
    "keyword": types.CompletionItemKind.Keyword, "operator": types.CompletionItemKind.Function,
    "macro": types.CompletionItemKind.Function, "name": types.CompletionItemKind.Variable,
    "option": types.CompletionItemKind.Property, "setting": types.CompletionItemKind.Property,
    "cost": types.CompletionItemKind.Function,
}


class PcdslLanguageServer(LanguageServer):
    def __init__(self):
        # whole documents, not edits: pygls applies edits on lines split by str.splitlines, which
        # also breaks at form feeds and U+2028, where the client and Lark do not
        super().__init__("pcdsl", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.analyses: dict[str, tuple[Optional[int], Analysis]] = {}    # uri -> (version, analysis)
        self.pending: dict[str, asyncio.Task] = {}

    def analysis(self, document: TextDocument) -> Analysis:
        """The analysis of the document's current text, made now if it is not there yet."""
        version, found = self.analyses.get(document.uri, (None, None))
        if found is not None and version == document.version and found.text == document.source:
            return found
        fresh = analyse(document.source, _file_name(document.uri), previous=found)
        self.analyses[document.uri] = (document.version, fresh)
        return fresh

    def publish(self, document: TextDocument) -> None:
        analysis = self.analysis(document)
        diagnostics = [types.Diagnostic(range=_client_range(document, analysis, p.range), message=p.message,
                                        severity=types.DiagnosticSeverity.Error, code=p.code, source="pcdsl")
                       for p in analysis.problems]
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=document.uri, version=document.version, diagnostics=diagnostics))

    def schedule(self, uri: str, delay: float) -> None:
        if uri in self.pending:
            self.pending.pop(uri).cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._publish_later(uri, delay))

    async def _publish_later(self, uri: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self.pending.pop(uri, None)
        self.publish(self.workspace.get_text_document(uri))


def _file_name(uri: str) -> str:
    return to_fs_path(uri) or uri


# Positions convert on the analysis' lines, split at "\n" as the protocol and the compiler count
# them (a "\r" before it stays on its line, which columns before it do not see), not on pygls's
# document.lines (str.splitlines, which also breaks at form feeds and U+2028).
def _client_range(document: TextDocument, analysis: Analysis, where: TextRange) -> types.Range:
    return document.position_codec.range_to_client_units(analysis.lines, ServerTextRange(
        start=ServerTextPosition(*where.start), end=ServerTextPosition(*where.end)))


def _at(ls: PcdslLanguageServer, params) -> tuple[TextDocument, Analysis, tuple[int, int]]:
    """A request at a position: the document, its analysis, and the position in the analysis' units."""
    document = ls.workspace.get_text_document(params.text_document.uri)
    analysis = ls.analysis(document)
    found = document.position_codec.position_from_client_units(analysis.lines, params.position)
    return document, analysis, (found.line, found.character)


def make_server() -> PcdslLanguageServer:
    server = PcdslLanguageServer()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: PcdslLanguageServer, params: types.DidOpenTextDocumentParams):
        ls.schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls: PcdslLanguageServer, params: types.DidChangeTextDocumentParams):
        ls.schedule(params.text_document.uri, DEBOUNCE_SECONDS)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(ls: PcdslLanguageServer, params: types.DidSaveTextDocumentParams):
        ls.schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(ls: PcdslLanguageServer, params: types.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        if uri in ls.pending:
            ls.pending.pop(uri).cancel()
        ls.analyses.pop(uri, None)
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: PcdslLanguageServer, params: types.HoverParams) -> Optional[types.Hover]:
        document, analysis, position = _at(ls, params)
        found = analysis.hover(position)
        if found is None:
            return None
        text, where = found
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                           range=_client_range(document, analysis, where))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: PcdslLanguageServer, params: types.DefinitionParams) -> Optional[types.Location]:
        document, analysis, position = _at(ls, params)
        where = analysis.definition(position)
        if where is None:
            return None
        return types.Location(uri=document.uri, range=_client_range(document, analysis, where))

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["(", ",", "~"]))
    def completion(ls: PcdslLanguageServer, params: types.CompletionParams) -> types.CompletionList:
        _, analysis, position = _at(ls, params)
        found = completions(analysis, position)
        return types.CompletionList(is_incomplete=False, items=[
            types.CompletionItem(label=c.label, kind=_COMPLETION_KINDS[c.kind], detail=c.detail or None,
                                 insert_text=c.insert) for c in found])

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbols(ls: PcdslLanguageServer, params: types.DocumentSymbolParams
                         ) -> list[types.DocumentSymbol]:
        document = ls.workspace.get_text_document(params.text_document.uri)
        analysis = ls.analysis(document)
        return [types.DocumentSymbol(name=d.name, detail=d.kind, kind=_SYMBOL_KINDS[d.kind],
                                     range=_client_range(document, analysis, d.extent),
                                     selection_range=_client_range(document, analysis, d.range))
                for d in analysis.declarations()]

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: PcdslLanguageServer, params: types.DocumentFormattingParams
                   ) -> Optional[list[types.TextEdit]]:
        from ..fmt import format_text
        document = ls.workspace.get_text_document(params.text_document.uri)
        try:
            formatted = format_text(document.source)
        except PcdslError:
            return None                      # the diagnostics already say why the text has no layout
        if "\r\n" in document.source:        # keep a Windows file's line ends
            formatted = formatted.replace("\n", "\r\n")
        if formatted == document.source:
            return []
        analysis = ls.analysis(document)
        lines = analysis.lines
        whole = _client_range(document, analysis, TextRange((0, 0), (len(lines) - 1, len(lines[-1]))))
        return [types.TextEdit(range=whole, new_text=formatted)]

    return server


def serve_stdio() -> None:
    make_server().start_io()
