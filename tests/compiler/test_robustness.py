# ---------------------------------------------------------------------------------------------
# Robustness: whatever text comes in, the pipeline compiles it or raises a PcdslError.
#
# Hypothesis mutates the shipped models and the valid test models (deleting, inserting and
# swapping characters, replacing tokens with other pieces of the language, dropping and
# duplicating lines) and, since mutated text mostly stops at the parser, also builds random
# expressions into a valid scaffold to reach the shape and energy checks. Any exception other
# than PcdslError is a compiler bug; so is a diagnostic that cannot be rendered or points outside
# the file, or generated source that is not valid Python. The examples at the end are inputs
# that once crashed the compiler, kept as regressions.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcdsl.diagnostics import PcdslError, messages
from pcdsl.pipeline import compile_text

from .cases import MODELS_DIR, valid_files

SEEDS = [p.read_text(encoding="utf-8") for p in sorted(MODELS_DIR.glob("*.pc"))] + \
        [p.read_text(encoding="utf-8") for p in valid_files()]
TOKEN = re.compile(r"\*\*|>=|[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]*)?(?:e-?[0-9]+)?|\S")
PIECES = ["(", ")", "[", "]", "{", "}", ",", ":", "=", "~", "+", "-", "*", "/", "**", ">=", "#", "$", ";",
          "\n", " ", '"', "0", "1", "2", "-1", "2.5", "1e400", "0.5", "S", "x", "h", "h1", "o", "y", "bias",
          "relu", "dense", "conv", "maxpool", "avgpool", "flatten", "sum", "add", "identity", "hardsigmoid",
          "tanh", "sigmoid", "gelu", "silu", "softplus", "leaky_relu", "elu", "global_avgpool", "upsample",
          "conv_transpose", "slope=0.1", "alpha=-1", "output_padding=1", "relax", "rule=gradient", "1e-320",
          "2**200", "2**64", "h**3",
          "state", "output", "input", "label", "size", "energy", "cost", "def", "in", "train", "true",
          "k=3", "stride=0", "pad=1", "sum(h**2)", "sum(h)**2", "h**4", "h**0.5", "sum(h) * h", "in [1, 0]"]


# -- mutated model files ----------------------------------------------------------------------
@st.composite
def mutated_models(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "swap", "token", "token", "line"]))
        pos = draw(st.integers(0, len(text)))
        if kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 8)):]
        elif kind == "insert":
            text = text[:pos] + draw(st.sampled_from(PIECES) | st.characters()) + text[pos:]
        elif kind == "swap" and text:
            other = draw(st.integers(0, len(text) - 1))
            chars = list(text)
            chars[min(pos, len(text) - 1)], chars[other] = chars[other], chars[min(pos, len(text) - 1)]
            text = "".join(chars)
        elif kind == "token":
            tokens = list(TOKEN.finditer(text))
            if tokens:
                tok = tokens[draw(st.integers(0, len(tokens) - 1))]
                words = [t.group() for t in tokens]
                text = text[:tok.start()] + draw(st.sampled_from(PIECES + words)) + text[tok.end():]
        elif kind == "line":
            lines = text.split("\n")
            index = draw(st.integers(0, len(lines) - 1))
            lines[index:index + 1] = [] if draw(st.booleans()) else [lines[index]] * 2
            text = "\n".join(lines)
    return text


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_models())
def test_mutated_models_compile_or_raise_a_diagnostic(text):
    _compiles_or_diagnoses(text)


def _compiles_or_diagnoses(text: str) -> None:
    try:
        compiled = compile_text(text, "mutant.pc")
    except PcdslError as err:
        assert err.code in messages.MESSAGES
        assert err.render().startswith("mutant.pc")
        if err.span is not None:
            assert 1 <= err.span.line <= text.count("\n") + 1, err.render()
            assert err.span.column >= 1
    else:
        compile(compiled.source, "<generated>", "exec")
        _runs(compiled)


def _runs(compiled) -> None:
    """An accepted model's module loads and runs its free phase, energies and one relaxation."""
    import torch
    from pcdsl.runtime.loading import load_model_class
    model = load_model_class(compiled.source, module_name="pcdsl_fuzzed")()
    x = torch.rand((2, *model.INPUT_SHAPE))
    generative = model.OUTPUT is None          # no label, cost or nudge; predictions instead
    label = None if generative else torch.randint(0, model.NUM_CLASSES, (2,))
    with torch.no_grad():
        free = model(x, 2)
        model.energies(x, free)
        model.relax(x, free, label, 0.0 if generative else 0.1, 1)
        if generative:
            assert model.predictions(x, free)[model.INPUT].shape == x.shape


# -- random terms in a valid scaffold ---------------------------------------------------------
_ATOMS = st.sampled_from(["x", "g", "h", "o", "bias", "1", "0.5", "2", "S", "-h"])


def _extend(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "**"]), children).map(" ".join),
        children.map(lambda e: f"({e})"),
        st.tuples(st.sampled_from(["relu", "hardsigmoid", "identity", "sum", "sum", "flatten", "tanh", "sigmoid",
                                   "gelu", "silu", "softplus", "elu", "global_avgpool"]), children)
        .map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, st.sampled_from(["0.1", "0", "-2"])).map(lambda t: f"leaky_relu({t[0]}, slope={t[1]})"),
        st.tuples(children, st.sampled_from(["1", "2"])).map(lambda t: f"upsample({t[0]}, {t[1]})"),
        st.tuples(children, st.sampled_from(["1", "2"]), st.sampled_from(["0", "1"]))
        .map(lambda t: f"conv_transpose({t[0]}, 2, k=2, stride={t[1]}, output_padding={t[2]})"),
        st.tuples(children, st.sampled_from(["2", "3", "S", "0"])).map(lambda t: f"dense({t[0]}, {t[1]})"),
        st.tuples(children, st.sampled_from(["1", "3"]), st.sampled_from(["0", "1"]))
        .map(lambda t: f"conv({t[0]}, 2, k={t[1]}, pad={t[2]})"),
        st.tuples(st.sampled_from(["maxpool", "avgpool"]), children, st.sampled_from(["1", "2", "4"]))
        .map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
    )


EXPRESSIONS = st.recursive(_ATOMS, _extend, max_leaves=8)
SCAFFOLD = """\
model scaffold {{
  size S = 3
  input  x : [1, 4, 4]
  label  y : [2]
  state  g : [2, 4, 4]{g_domain}
  state  h : [3]{h_domain}
  output o : [2]
  {g_term}
  {h_term}
  {o_term}
  {extra}
  cost squared_error(o, y)
}}
"""
TERMS = {  # (predictive coding, Hopfield-style energy) form of each layer's term
    "g": ("g ~ relu(conv(x, 2, k=3, pad=1) + bias)",
          "energy eg = 0.5 * sum(g**2) - sum(g * conv(x, 2, k=3, pad=1))"),
    "h": ("h ~ relu(dense(flatten(g), 3))",
          "energy eh = 0.5 * sum(h**2) - sum(h * dense(flatten(g), 3))"),
    "o": ("o ~ dense(h, 2) + bias",
          "energy eo = 0.5 * sum(o**2) - sum(o * dense(h, 2))"),
}


@st.composite
def scaffolded_models(draw) -> str:
    form = draw(st.sampled_from([0, 1]))
    terms = {f"{k}_term": v[form] for k, v in TERMS.items()}
    layer = draw(st.sampled_from(sorted(TERMS)))
    expression = draw(EXPRESSIONS)
    extra = ""
    if draw(st.booleans()):   # replace one layer's term by a random one
        terms[f"{layer}_term"] = f"{layer} ~ {expression}" if form == 0 else \
            f"energy e{layer} = 0.5 * sum({layer}**2) + {expression}"
    else:                     # or add a random energy term
        extra = f"energy extra = {expression}"
    domains = st.sampled_from(["", " >= 0", " in [0, 1]"])
    return SCAFFOLD.format(g_domain=draw(domains), h_domain=draw(domains), extra=extra, **terms)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scaffolded_models())
def test_random_terms_compile_or_raise_a_diagnostic(text):
    _compiles_or_diagnoses(text)


# -- inputs that once crashed the compiler ----------------------------------------------------
HOPFIELD = """\
model regression {{
  input  x : [4]
  label  y : [2]
  state  h : [3] in [0, 1]
  output o : [2] in [0, 1]
  energy e1 = 0.5 * sum(h**2) - sum(h * dense(x, 3))
  energy e2 = 0.5 * sum(o**2) - sum(o * dense(h, 2))
  {extra}
  cost squared_error(o, y)
}}
"""


@pytest.mark.parametrize("extra, code", [
    ("energy e3 = sum(h) * sum(h)", "E307"),          # ValueError: not a combination of sums
    ("energy e3 = sum(h) / sum(o)", "E307"),
    ("energy e3 = 2 ** sum(h)", "E307"),
    ("energy e3 = sum(o) ** 2", "E307"),
    ("energy e3 = sum(h * (dense(x, 3) * sum(x)))", "E307"),
    ("energy e3 = sum(h ** -1)", "E305"),             # sympy PolynomialError
    ("energy e3 = sum(h ** 0.5)", "E305"),
    ("energy e3 = sum(h * dense(x, 1e400))", "E122"),  # OverflowError: float inf to int (now: not a float32)
    ("state g : [dense(x, 3)]", "E117"),              # AttributeError: no term to own the weight
    ("o ~ dense(h, 2) * sum(x)", "E307"),             # was accepted: a sum inside a prediction
])
def test_former_crash_is_a_diagnostic(extra, code):
    with pytest.raises(PcdslError) as info:
        compile_text(HOPFIELD.format(extra=extra), "regression.pc")
    assert info.value.code == code, info.value.render()
    assert info.value.span is not None and info.value.span.line == 8


def test_state_in_its_own_linear_prediction_compiles():
    # `o ~ 2*o + ...` nests the state in its own pre-activation: the update derivation used to
    # fail an internal assertion; the energy 0.5*|-o - W x|^2 has curvature 1 and a plain update
    text = HOPFIELD.format(extra="").replace(
        "  energy e2 = 0.5 * sum(o**2) - sum(o * dense(h, 2))\n", "  o ~ 2 * o + dense(h, 2)\n")
    compiled = compile_text(text, "regression.pc")
    assert compiled.checked.rules["o"].curvature == 1
