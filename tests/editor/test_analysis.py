# ---------------------------------------------------------------------------------------------
# What the language server answers, without the protocol (pcdsl/editor/analysis.py).
#
# Oracles: each invalid model states on its first line the code, line and column its error must
# carry (tests/compiler/cases.py), so the editor's range is checked against that, not against
# the pipeline; declarations are found in the text by a regular expression written here; the
# hover of a state shows the shapes and the update rule `pcdsl check --json` reports; any text
# at all (random edits of real models) is analysed without an exception.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.cases import invalid_cases
from helpers import ROOT
from pcdsl.api import describe
from pcdsl.editor.analysis import TextRange, analyse, completions
from pcdsl.ops import COSTS, REGISTRY
from pcdsl.parse.train_block import ALL_SETTINGS, CALL_SETTINGS
from pcdsl.shipped import resolve_model_file

CASES = invalid_cases()
MLP = (ROOT / "models" / "mlp_digits.pc").read_text()
VGG10 = resolve_model_file("vgg10_imagenet").read_text()


def _where(text: str, pattern: str, group: int = 1) -> tuple[int, int]:
    """(line, character) of a regular expression's group in text, 0-based."""
    match = re.search(pattern, text, flags=re.MULTILINE)
    start = match.start(group)
    line = text.count("\n", 0, start)
    return line, start - (text.rfind("\n", 0, start) + 1)


# -- diagnostics --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_invalid_model_gets_its_diagnostic_at_its_stated_place(case):
    problems = analyse(case.path.read_text(), str(case.path)).problems
    assert len(problems) == 1
    assert problems[0].code == case.code
    assert problems[0].range.start == (case.line - 1, case.column - 1)
    assert problems[0].range.end >= problems[0].range.start
    if case.hint:
        assert case.hint in problems[0].message


# (syntax errors have no corrected twin: the fix is the valid models' syntax itself)
TWINS = [p for p in (c.path.parent.parent / "valid" / c.path.name for c in CASES) if p.exists()]


@pytest.mark.parametrize("valid", TWINS, ids=lambda p: p.stem)
def test_each_corrected_model_has_no_problem(valid):
    assert analyse(valid.read_text(), str(valid)).problems == []


def test_a_name_range_covers_exactly_the_unknown_name():
    text = MLP.replace("hidden(h1, 256)", "hidden(hh1, 256)")
    (problem,) = analyse(text).problems
    line, character = _where(text, r"hidden\((hh1),")
    assert problem.range == TextRange((line, character), (line, character + 3))


# -- hover --------------------------------------------------------------------------------------
def test_hover_on_a_state_shows_its_shape_domain_and_the_checkers_update_rule():
    analysis = analyse(MLP)
    report = describe("mlp_digits")
    rule = next(r for r in report["rules"] if r["state"] == "h2")
    text, where = analysis.hover(_where(MLP, r"hidden\((h1), 256\)"))     # a use of h1 ...
    assert "**state** `h1` : `[256]`, domain `>= 0`" in text
    text, where = analysis.hover(_where(MLP, r"^\s*state\s+(h2)"))          # ... and h2's declaration
    assert where.end[1] - where.start[1] == 2
    assert rule["mod_update"] in text and rule["update"] in text
    assert "a_h2 = " + report["definitions"]["a_h2"] in text               # the intermediates it names
    assert "layer 2" in text


def test_hover_shows_symbolic_shapes_with_their_values():
    text, _ = analyse(VGG10).hover(_where(VGG10, r"^\s*state\s+(h1)\b"))
    assert "`[64, 112, 112]` = `[64, S/2, S/2]`" in text


def test_hover_on_a_macro_call_shows_its_definition_and_uses():
    text, _ = analyse(MLP).hover(_where(MLP, r"~ (hidden)\(x"))
    assert "def hidden(src, n) = relu(dense(src, n) + bias)" in text
    assert "used 2 times" in text


def test_hover_on_an_operator_and_its_option():
    text = "model m {\n  input x : [3, 8, 8]\n  state h : [4, 8, 8] ~ conv(x, 4, k=3, pad=1)\n}\n"
    analysis = analyse(text)
    operator, _ = analysis.hover(_where(text, r"~ (conv)"))
    assert operator.startswith("**operator** `conv(x, size, k=") and "convolution" in operator
    option, _ = analysis.hover(_where(text, r", (pad)="))
    assert option.startswith("`pad` of `conv(")


def test_hover_on_bias_and_on_a_train_setting():
    analysis = analyse(MLP)
    assert analysis.hover(_where(MLP, r"\+ (bias)\)"))[0].startswith("**bias**")
    text, _ = analysis.hover(_where(MLP, r"^\s*(ep)\("))
    assert text == "**train setting** `ep(" + ", ".join(f"{k}=" for k in CALL_SETTINGS["ep"][1]) + ")`"


def test_hover_never_shows_shapes_from_a_text_that_does_not_check():
    text = MLP.replace("hidden(h1, 256)", "hidden(h3, 256)")
    hover, _ = analyse(text).hover(_where(text, r"^\s*state\s+(h1)"))
    assert "[256]" in hover                                               # the statement itself
    assert "domain" not in hover and "once the model checks" in hover


# -- definition ---------------------------------------------------------------------------------
def test_go_to_definition_of_a_macro_a_parameter_a_state_and_a_size():
    analysis = analyse(VGG10)
    macro = _where(VGG10, r"^\s*def (conv_pool)\(")
    assert analysis.definition(_where(VGG10, r"~ (conv_pool)\(x")).start == macro
    assert analysis.definition(_where(VGG10, r"^\s*state\s+(h1)\b")).start == _where(VGG10, r"^\s*state\s+(h1)\b")
    assert analysis.definition(_where(VGG10, r"conv_pool\((h1),")).start == _where(VGG10, r"^\s*state\s+(h1)\b")
    assert analysis.definition(_where(VGG10, r"\[64,\s+(S)/2")).start == _where(VGG10, r"^\s*size\s+(S)\b")
    parameter_use = _where(VGG10, r"def conv_pool\(\w+, \w+\) = .*?conv\((\w+),")
    definition = analysis.definition(parameter_use)
    assert definition.start[0] == parameter_use[0] and definition.start < parameter_use  # in the def's list


def test_definitions_survive_a_syntax_error_elsewhere_while_typing():
    good = analyse(MLP)
    typing = MLP.replace("output o  : [10]", "output o  : [10")       # a bracket not yet closed
    analysis = analyse(typing, previous=good)
    assert analysis.problems and analysis.problems[0].code in ("E003", "E004")
    assert analysis.definition(_where(typing, r"~ (hidden)\(x")).start == _where(typing, r"def (hidden)")
    # a line typed above (the usual way to add a statement): the names below follow their lines
    inserted = typing.replace("  label  y", "  size \n  label  y")
    analysis = analyse(inserted, previous=analysis)
    assert not analysis.current_names
    line, character = _where(inserted, r"state\s+(h1)")
    assert analysis.definition(_where(inserted, r"hidden\((h1), 256")) == TextRange((line, character), (line, character + 2))
    # a name on a line that changed is dropped, not pointed at the wrong place
    edited = inserted.replace("state  h1 : [256]", "state  h1b : [256]")
    assert analyse(edited, previous=analysis).definition(_where(edited, r"hidden\((h1), 256")) is None
    # the names of the line being typed stay while they stand where they stood
    typed = inserted.replace("hidden(h1, 256)", "hidden(h1, 256) * (")
    kept = analyse(typed, previous=analysis)
    assert kept.definition(_where(typed, r"hidden\((h1), 256")) == TextRange((line, character), (line, character + 2))
    assert "h2" in [d.name for d in kept.declarations()]


def test_outline_lists_the_declarations_in_order():
    names = [(d.kind, d.name) for d in analyse(MLP).declarations()]
    assert names == [("input", "x"), ("label", "y"), ("macro", "hidden"), ("state", "h1"), ("state", "h2"),
                     ("output", "o")]


# -- completion ---------------------------------------------------------------------------------
def _labels(text: str, pattern: str) -> set[str]:
    return {c.label for c in completions(analyse(text), _where(text, pattern))}


def test_completion_at_a_statement_start_offers_the_statements_and_the_states():
    labels = _labels(MLP, r"^(\s*)state\s+h2")
    assert {"state", "def", "energy", "cost", "size"} <= labels and {"h1", "h2", "o"} <= labels
    assert not labels & set(REGISTRY)


def test_completion_in_an_expression_offers_names_macros_operators_and_parameters():
    labels = _labels(MLP, r"~ ()hidden\(x")
    declared = set(re.findall(r"^\s*(?:input|state|output|label)\s+(\w+)", MLP, flags=re.MULTILINE))
    assert declared | {"hidden", "bias"} | set(REGISTRY) <= labels
    assert {"src", "n"} <= _labels(MLP, r"= relu\(()dense")                # inside the macro's body
    assert not {"src", "n"} & labels                                     # and only there


def test_completion_of_options_costs_and_settings():
    text = "model m {\n  input x : [3, 8, 8]\n  state h : [4, 8, 8] ~ conv(x, 4, k=3, pad=1)\n}\n"
    assert {f"{o.name}=" for o in REGISTRY["conv"].options} <= _labels(text, r"k=3, ()pad")
    assert _labels(MLP, r"cost ()cross_entropy") == set(COSTS)
    assert _labels(MLP, r"^(\s*)sgd\(") == set(ALL_SETTINGS)
    assert _labels(MLP, r"ep\(()scheme") == {f"{k}=" for k in CALL_SETTINGS["ep"][1]}
    assert _labels(MLP, r"^\s*state\s+()h1") == set()                     # a new name: nothing to offer


def test_completion_where_nothing_or_only_a_few_words_fit():
    assert completions(analyse(MLP), _where(MLP, r"the demo,() a predictive")) == []      # in a comment
    assert _labels(MLP, r"scheme=()centered") == set()                                  # a setting's value
    assert _labels(MLP, r"^(\s*)ep\(") == set(ALL_SETTINGS)
    gains = MLP.replace("  batch 32", "  init_gain(h1=2.0)\n  batch 32")
    assert _labels(gains, r"init_gain\(()h1=") == {"h1=", "h2=", "o="}                   # its keys are states
    assert {c.label for c in completions(analyse(""), (0, 0))} == {"model", "train"}
    assert _labels(MLP, r"\}\n()\ntrain") == {"model", "train"}                           # between the blocks


def test_a_macro_written_over_two_lines_offers_its_parameters_on_the_second():
    text = MLP.replace("  def hidden(src, n) = relu(dense(src, n) + bias)",
                       "  def hidden(src, n) =\n      relu(dense(src, n) + bias)")
    labels = _labels(text, r"^\s+()relu\(dense\(src")
    assert {"src", "n", "relu", "x"} <= labels and not {"state", "def"} & labels


def test_a_macro_being_typed_offers_its_parameters():
    typing = MLP.replace("  def hidden", "  def g(src, width) = relu(dense(\n  def hidden")
    labels = {c.label for c in completions(analyse(typing, previous=analyse(MLP)),
                                           _where(typing, r"relu\(dense\(()\n"))}
    assert {"src", "width"} <= labels and {"x", "h1", "hidden", "dense"} <= labels


# -- any text -----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(MLP)), st.integers(0, 40), st.text(alphabet="{}[]()~=,:+-*/#\n xhob0123😀", max_size=6))
def test_any_edit_is_analysed_without_an_exception(cut, removed, inserted):
    text = MLP[:cut] + inserted + MLP[cut + removed:]
    analysis = analyse(text, previous=analyse(MLP))
    lines = text.split("\n")
    for problem in analysis.problems:
        assert problem.code != "internal", problem.message
        (line, character), (end_line, _) = problem.range.start, problem.range.end
        assert 0 <= line <= end_line <= len(lines) and 0 <= character <= len(lines[line]) + 1
    for occurrence in analysis.symbols.occurrences:
        (line, start), (_, end) = occurrence.range.start, occurrence.range.end
        assert lines[line][start:end] == occurrence.name
        analysis.hover(occurrence.range.start)
    completions(analysis, (text.count("\n", 0, cut), cut - (text.rfind("\n", 0, cut) + 1)))


def test_the_server_command_without_pygls_says_how_to_install_it(monkeypatch):
    import sys

    from click.testing import CliRunner

    from pcdsl.cli.main import main
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)          # as if pygls were not installed
    monkeypatch.delitem(sys.modules, "pcdsl.editor.language_server", raising=False)
    result = CliRunner().invoke(main, ["lsp"])
    assert result.exit_code != 0 and 'pip install "pcdsl[lsp]"' in result.output
    assert "Traceback" not in result.output
