# ---------------------------------------------------------------------------------------------
# `--set key=value` overrides: E501 for a malformed item, an unknown key (with did-you-mean) or a
# bad size value, E403 when an overridden train value fails validation, and the happy path.
#
# These errors come from the command line, not the file, so they carry no line and column: the
# header is `file: error[CODE]: ...` with no source line or caret, and the hint says when
# the bad value came from --set. A size override still flows into the shape checks, whose errors
# point into the file as usual.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest

from pcdsl.diagnostics import PcdslError
from pcdsl.pipeline import compile_file

from .cases import run_cli

SIZED_MODEL = """\
model sized {
  size S = 16
  input  x  : [1, S, S]
  label  y  : [10]

  state  h1 : [4, S/2, S/2] >= 0  ~ relu(maxpool(conv(x, 4, k=3, pad=1) + bias, 2))
  output o  : [10]                ~ dense(flatten(h1), 10) + bias

  cost cross_entropy(o, y)
}

train {
  ep(scheme=centered, beta=0.05, steps=4)
  sgd(lr=0.05, momentum=0.9, nesterov=true)
  batch 32
}
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "sized.pc"
    path.write_text(SIZED_MODEL, encoding="utf-8")
    return path


def _bad(name, items, code, text, hint=None):
    """One rejected override: the --set items, the code, a text of the message, a text of the hint."""
    return pytest.param(items, code, text, hint, id=name)


FROM_SET = "the value came from --set"
BAD_OVERRIDES = [
    _bad("unknown-key", ["bta=0.1"], "E501", "unknown key `bta` in --set", "did you mean `beta`?"),
    _bad("unknown-key-swap", ["stpes=3"], "E501", "unknown key `stpes`", "did you mean `steps`?"),
    _bad("size-wrong-case", ["s=32"], "E501", "unknown key `s`", "did you mean `S`?"),
    _bad("unknown-key-lists-keys", ["colour=red"], "E501", "unknown key `colour`", "keys: S, adjoint_steps, algorithm"),
    _bad("unknown-init-gain-state", ["init_gain.h2=2"], "E501", "unknown state `h2` in --set init_gain.h2",
         "did you mean `h1`?"),
    _bad("no-equals", ["beta"], "E501", "--set expects key=value, got `beta`"),
    _bad("empty-key", ["=0.1"], "E501", "--set expects key=value, got `=0.1`"),
    _bad("size-zero", ["S=0"], "E501", "size `S` must be a positive integer, got `0`"),
    _bad("size-negative", ["S=-8"], "E501", "size `S` must be a positive integer, got `-8`"),
    _bad("size-fraction", ["S=2.5"], "E501", "size `S` must be a positive integer, got `2.5`"),
    _bad("size-word", ["S=big"], "E501", "size `S` must be a positive integer, got `big`"),
    _bad("size-bool", ["S=true"], "E501", "size `S` must be a positive integer, got `true`"),
    _bad("broken-list", ["mean=[0.5"], "E501", "`[0.5` is not a valid list"),
    _bad("beta-zero", ["beta=0"], "E403", "invalid value for `beta`", f"{FROM_SET} beta"),
    _bad("batch-word", ["batch=many"], "E403", "invalid value for `batch`", f"{FROM_SET} batch"),
    _bad("unknown-scheme", ["scheme=middle"], "E403", "invalid value for `scheme`", f"{FROM_SET} scheme"),
    _bad("init-gain-word", ["init_gain.h1=abc"], "E403", "invalid value for `init_gains`",
         f"{FROM_SET} init_gain.STATE"),
    _bad("momentum-breaks-nesterov", ["momentum=0"], "E403", "nesterov=true needs momentum > 0",
         f"{FROM_SET} momentum"),
    _bad("mean-without-std", ["mean=[0.5]"], "E403", "normalisation needs both `mean` and `std`",
         f"{FROM_SET} mean"),
]


@pytest.mark.parametrize("items, code, text, hint", BAD_OVERRIDES)
def test_pipeline_rejects_override(model_file, items, code, text, hint):
    with pytest.raises(PcdslError) as info:
        compile_file(model_file, items)
    err = info.value
    assert err.code == code and text in err.text, err.render()
    assert err.span is None, "an error in --set has no place in the file"
    if hint:
        assert err.hint and hint in err.hint, err.render()


@pytest.mark.parametrize("items, code, text, hint", BAD_OVERRIDES)
def test_cli_reports_override_without_a_caret(model_file, items, code, text, hint):
    args = ["check", str(model_file)]
    for item in items:
        args += ["--set", item]
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{model_file}: error[{code}]: ")
    assert text in lines[0]
    assert not any(line.strip() and set(line.strip()) == {"^"} for line in lines)
    if hint:
        assert lines[1].startswith("hint: ") and hint in lines[1]


# -- overrides that are fine ------------------------------------------------------------------
def test_size_override_changes_every_shape(model_file):
    compiled = compile_file(model_file, ["S=32"])
    assert compiled.checked.shapes["x"].value == (1, 32, 32)
    assert compiled.checked.shapes["h1"].value == (4, 16, 16)


def test_train_overrides_replace_the_file_values(model_file):
    config = compile_file(model_file, ["beta=0.01", "momentum=0.5", "init_gain.h1=2", "mean=[0.5]",
                                       "std=[0.25]", "scheme=forward"]).ir.train
    assert (config.beta, config.momentum, config.scheme) == (0.01, 0.5, "forward")
    assert config.init_gains == {"h1": 2.0}
    assert (config.mean, config.std) == ([0.5], [0.25])


def test_size_override_errors_still_point_into_the_file(model_file):
    # S = 15 makes h1's S/2 = 7.5: the error is the file's, at the dimension, and names the value
    with pytest.raises(PcdslError) as info:
        compile_file(model_file, ["S=15"])
    err = info.value
    assert err.code == "E207" and "S=15" in err.text
    assert (err.span.line, err.span.column) == (6, 19)
