# ---------------------------------------------------------------------------------------------
# Hygiene: no name or text from a model file can break, or get into, the generated code.
#
# Oracle: Python itself (the source must compile and load), the backprop gradient of the same
# network (a model that compiles must also compute the right thing: EP agrees with backprop),
# and the file system (code hidden in a file name or a comment must not run).
#
# The names are Python's keywords and builtins and the generator's own vocabulary (the module's
# imports and helpers, its methods and constants, the locals of its methods, and the names it
# gives intermediates: a_h1, eps_o, delta_h2, ...). Every name is tried in every role — model,
# input, label, hidden state, output, macro, macro parameter, energy term — by rotating the list
# through two templates, so each model holds many hostile names at once. A name the language
# itself reserves must be refused with a diagnostic; every other model must work.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import ast
import builtins
import keyword

import pytest
import torch

from pcdsl.codegen.names import METHOD_LOCALS, MODULE_LEVEL, MODULE_MEMBERS
from pcdsl.diagnostics import PcdslError
from pcdsl.pipeline import compile_file, compile_text
from pcdsl.runtime.estimators import bp_gradients, ep_gradients
from pcdsl.runtime.loading import load_model_class

from helpers import cosine

GENERATOR_WORDS = {"a_h", "a_h1", "z_h1", "eps_o", "eps_h", "delta_h2", "delta_h", "nudge_o", "grad_h", "v_h",
                   "h_next", "h1_next", "carry", "fixed", "new", "update", "s", "mod", "o", "h", "h1", "o_b",
                   "h_b", "h_w_x", "o_w_h", "Model", "INIT", "label", "states", "beta", "steps", "total",
                   "max_unpool", "self", "F", "torch", "math", "x", "_", "__init__", "__class__", "__dict__"}
VOCABULARY = sorted(set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | GENERATOR_WORDS
                    | METHOD_LOCALS | MODULE_LEVEL | MODULE_MEMBERS)

PCN = """model {model} {{
  input  {input} : [6]
  label  {label} : [3]
  def {macro}({param}, n) = relu(dense({param}, n) + bias)
  state  {state} : [5] >= 0 ~ {macro}({input}, 5)
  output {output} : [3] ~ dense({state}, 3) + bias
  cost cross_entropy({output}, {label})
}}
"""
HOPFIELD = """model {model} {{
  input  {input} : [6]
  label  {label} : [3]
  state  {state} : [5] in [0, 1]
  output {output} : [3] in [0, 1]
  energy {energy} = 0.5 * sum({state}**2) - sum({state} * dense({input}, 5)) - sum({state} * bias)
  energy {energy2} = 0.5 * sum({output}**2) - sum({output} * dense({state}, 3))
  cost squared_error({output}, {label})
}}
"""
ROLES = {PCN: ("model", "input", "label", "macro", "param", "state", "output"),
         HOPFIELD: ("model", "input", "label", "state", "output", "energy", "energy2")}


PLAIN = dict(model="hygiene", input="image", label="target", macro="block", param="source", output="score")


def _refused_alone(name: str) -> bool:
    """Whether the language refuses the name itself (a keyword of pcdsl, an operator, ...)."""
    try:
        compile_text(PCN.format(**PLAIN, state=name), "alone.pc", target=None)
    except PcdslError:
        return True
    return False


REFUSED = [n for n in VOCABULARY if _refused_alone(n)]
ACCEPTED = [n for n in VOCABULARY if n not in REFUSED]


def test_the_vocabulary_is_hostile_enough():
    assert len(ACCEPTED) > 200
    for name in ("class", "None", "self", "torch", "F", "total", "beta", "carry", "mod", "a_h1", "eps_o",
                 "delta_h2", "x", "states", "label", "forward", "training", "parameters", "range", "sum"):
        assert name in VOCABULARY


@pytest.mark.parametrize("name", REFUSED)
def test_a_reserved_name_is_refused_with_a_diagnostic(name):
    with pytest.raises(PcdslError) as info:
        compile_text(PCN.format(**PLAIN, state=name), "reserved.pc")
    assert info.value.render().startswith("reserved.pc:")


def _models(template):
    roles = ROLES[template]
    count = len(ACCEPTED)
    for start in range(count):
        names = {role: ACCEPTED[(start + offset * 37) % count] for offset, role in enumerate(roles)}
        if len(set(names.values())) == len(names):
            yield start, template.format(**names)


def _gradcheck(source: str, free_steps=None, beta=1e-4, steps=40) -> float:
    model = load_model_class(source, module_name="pcdsl_hygiene")().double()
    model.reset_parameters(torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((2, *model.INPUT_SHAPE), generator=generator, dtype=torch.float64)
    label = torch.randint(0, model.NUM_CLASSES, (2,), generator=generator)
    estimate = ep_gradients(model, x, label, beta, steps, free_steps=free_steps)["grads"]
    truth = bp_gradients(model, x, label, free_steps=free_steps)["grads"]
    return min(cosine(e, t) for e, t in zip(estimate, truth))


@pytest.mark.parametrize("template", [PCN, HOPFIELD], ids=["pcn", "hopfield"])
def test_every_name_in_every_role_compiles_to_working_code(template):
    checked = 0
    for start, text in _models(template):
        compiled = compile_text(text, f"hostile_{start}.pc")
        ast.parse(compiled.source)
        free_steps = None if template is PCN else 60
        worst = _gradcheck(compiled.source, free_steps, beta=1e-4 if template is PCN else 1e-3,
                           steps=20 if template is PCN else 40)
        assert worst > 0.999, text
        checked += 1
    assert checked > 200


def test_names_keep_their_user_spelling_where_the_user_sees_them():
    text = PCN.format(model="class", input="self", label="None", macro="torch", param="beta", state="total",
                      output="a_h1")
    source = compile_text(text, "names.pc").source
    model = load_model_class(source, module_name="pcdsl_hygiene_names")()
    assert model.STATES == ("total", "a_h1") and model.OUTPUT == "a_h1" and model.NAME == "class"
    assert set(model(torch.rand(2, 6))) == {"total", "a_h1"}        # the states dict keeps the names
    assert "total_1 = " in source and "def total(t):" in source       # the local gave way


# -- text from the user: file names and comments ------------------------------------------------
SENTINEL = "pcdsl_injection_ran"
PAYLOAD = f'__import__("pathlib").Path("{SENTINEL}").touch()'
SIMPLE = """model simple {
  input  x : [4]
  label  y : [2]
  # a comment that tries to end itself:\x0c%s\u2028%s\x85%s
  output o : [2] ~ dense(x, 2) + bias
  cost cross_entropy(o, y)
}
""" % (PAYLOAD, PAYLOAD, PAYLOAD)


@pytest.mark.parametrize("file_name", [
    f'a"; {PAYLOAD}; ".pc', f"b\n{PAYLOAD}\n.pc", f"c'''\n{PAYLOAD}\n'''.pc", f'd"""\n{PAYLOAD}\n""".pc',
    f"e\r{PAYLOAD}.pc", f"f\\\n{PAYLOAD}.pc"])
def test_file_names_and_comments_cannot_inject_code(tmp_path, monkeypatch, file_name):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / file_name
    path.write_text(SIMPLE, encoding="utf-8")
    compiled = compile_file(path)
    tree = ast.parse(compiled.source)
    # the module is imports, helper functions and the class: no other statement at the top
    kinds = {type(node).__name__ for node in tree.body[1:]}     # after the docstring
    assert kinds <= {"Import", "ImportFrom", "FunctionDef", "ClassDef"}, kinds
    model_class = load_model_class(compiled.source, module_name="pcdsl_injection")
    model = model_class()
    model(torch.rand(3, 4))
    assert model_class.SOURCE == file_name
    assert not (tmp_path / SENTINEL).exists()


def test_a_carriage_return_ends_a_comment_line_as_an_editor_shows_it(tmp_path):
    # the file is read with universal newlines: code after a \r is a line of its own, and here
    # a statement the parser refuses, so it never reaches the generated module
    path = tmp_path / "cr.pc"
    path.write_bytes(SIMPLE.replace("\x0c", "\r").encode("utf-8"))
    with pytest.raises(PcdslError) as info:
        compile_file(path)
    assert info.value.code == "E003"
