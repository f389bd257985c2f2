# ---------------------------------------------------------------------------------------------
# Every invalid model file, through the public pipeline and through `pcdsl check`.
#
# Each file under invalid/ holds one mistake and states on line 1 the code, line and column the
# error must carry. The pipeline must raise exactly that PcdslError; the CLI must exit 1 and print
# the `file:line:col: error[CODE]:` header, the source line and a caret under the column, never a
# traceback. E001 (unreadable files) has no checked-in file: the files are made here.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest

from pcdsl.diagnostics import PcdslError, messages
from pcdsl.pipeline import compile_file, compile_text

from .cases import invalid_cases, run_cli

CASES = invalid_cases()
HINTED = [c for c in CASES if c.hint]


# -- the checked-in files themselves ----------------------------------------------------------
def test_there_are_enough_invalid_models():
    assert len(CASES) >= 40


def test_every_code_has_an_invalid_model():
    # E001 and E005 are tested below with text made at test time, E501 in test_overrides.py
    covered = {c.code for c in CASES} | {"E001", "E005", "E501"}
    assert covered == set(messages.MESSAGES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_file_is_named_after_its_code(case):
    assert case.path.stem.startswith(case.code + "_")


# -- the pipeline: code, line, column, hint ---------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_pipeline_reports_code_line_and_column(case):
    with pytest.raises(PcdslError) as info:
        compile_file(case.path)
    err = info.value
    assert err.code == case.code, err.render()
    assert err.span is not None, err.render()
    assert (err.span.line, err.span.column) == (case.line, case.column), err.render()
    assert err.file == str(case.path)


@pytest.mark.parametrize("case", HINTED, ids=lambda c: c.id)
def test_pipeline_gives_the_hint(case):
    with pytest.raises(PcdslError) as info:
        compile_file(case.path)
    assert info.value.hint is not None and case.hint in info.value.hint, info.value.render()


def test_did_you_mean_is_covered_for_names_operators_and_settings():
    hinted = {c.code for c in HINTED if c.hint.startswith("did you mean")}
    assert {"E101", "E103", "E105", "E115", "E401", "E402"} <= hinted


# -- the CLI: exit status and rendering -------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cli_prints_header_source_line_and_caret(case):
    result = run_cli("check", str(case.path))
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    assert result.stdout == ""
    header, source, caret, *rest = result.stderr.splitlines()
    assert header.startswith(f"{case.path}:{case.line}:{case.column}: error[{case.code}]: ")
    line_text = case.path.read_text(encoding="utf-8").splitlines()[case.line - 1]
    assert source == "    " + line_text.expandtabs(1)
    assert caret.strip() and set(caret.strip()) == {"^"}
    assert caret.index("^") == 4 + case.column - 1
    if case.hint:
        assert rest and rest[0].startswith("hint: ") and case.hint in rest[0]


# -- E001: files that cannot be read ----------------------------------------------------------
def _unreadable_error(path) -> PcdslError:
    with pytest.raises(PcdslError) as info:
        compile_file(path)
    assert info.value.code == "E001"
    assert info.value.span is None
    return info.value


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.pc"
    assert "no such file" in _unreadable_error(path).text
    result = run_cli("check", str(path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{path}: error[E001]: cannot read model file: no such file"
    assert "Traceback" not in result.output


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.pc"
    path.write_bytes("model m {\n  input x : [4]  # caf\u00e9\n}\n".encode("latin-1"))
    assert "not UTF-8" in _unreadable_error(path).text
    result = run_cli("check", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}: error[E001]: cannot read model file: it is not UTF-8 text")
    assert "Traceback" not in result.output


def test_folder_through_the_pipeline(tmp_path):
    assert "folder" in _unreadable_error(tmp_path).text


def test_folder_through_the_cli(tmp_path):
    result = run_cli("check", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{tmp_path}: error[E001]: cannot read model file: it is a folder")


# -- rendering details ------------------------------------------------------------------------
def test_source_line_is_found_past_form_feeds_and_crlf():
    # the parser counts lines at "\n" only; the rendered source line must be the same line
    text = "model m {\x0c\n  input x : [4]\r\n  label y : [2]\n  output o : [2] ~ dense(q, 2)\n" \
           "  cost squared_error(o, y)\n}\n"
    with pytest.raises(PcdslError) as info:
        compile_text(text, "crlf.pc")
    header, source, caret = info.value.render().splitlines()[:3]
    assert header.startswith("crlf.pc:4:26: error[E101]")
    assert source == "      output o : [2] ~ dense(q, 2)"
    assert caret.index("^") == 4 + 26 - 1


def test_expression_nested_too_deeply():
    from pcdsl.diagnostics import PcdslError
    from pcdsl.pipeline import compile_text
    text = ("model deep {\n  input x : [3]\n  state h : [3] ~ " + " + ".join(["x"] * 3000)
            + "\n  output o : [2] ~ dense(h, 2)\n  label y : [2]\n  cost cross_entropy(o, y)\n}\n")
    with pytest.raises(PcdslError) as info:
        compile_text(text, "deep.pc")
    assert info.value.code == "E005"
    assert "Traceback" not in info.value.render()
