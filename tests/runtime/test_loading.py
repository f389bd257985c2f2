# ---------------------------------------------------------------------------------------------
# Generated source -> Model class.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import traceback

import pytest
import torch

from pcdsl.runtime.loading import ModelSourceError, load_model_class
from tests.support.sources import handwritten_source


def test_loads_the_model_class_from_source():
    model_class = load_model_class(handwritten_source((6, 5, 3), cost="squared_error"))
    model = model_class()
    assert model.sizes == (6, 5, 3) and model.COST == "squared_error"
    assert set(model(torch.zeros(2, 6))) == {"h1", "h2"}


def test_source_without_model_is_rejected():
    with pytest.raises(ModelSourceError, match="no `Model` class"):
        load_model_class("import torch\nclass Net(torch.nn.Module):\n    pass\n")


def test_model_that_is_not_a_module_is_rejected():
    with pytest.raises(ModelSourceError, match="not a torch.nn.Module"):
        load_model_class("Model = 3\n")


def test_syntax_error_names_the_line():
    with pytest.raises(ModelSourceError, match="line 2"):
        load_model_class("import torch\nclass Model(torch.nn.Module)\n")


def test_error_while_running_the_source_is_reported():
    with pytest.raises(ModelSourceError, match="ZeroDivisionError"):
        load_model_class("x = 1 / 0\n")


def test_tracebacks_show_generated_lines():
    source = ("import torch\n\nclass Model(torch.nn.Module):\n"
              "    def forward(self, x):\n        raise RuntimeError('inside generated code')\n")
    model = load_model_class(source, module_name="pcdsl_traceback_probe")()
    with pytest.raises(RuntimeError) as caught:
        model(torch.zeros(1))
    text = "".join(traceback.format_exception(caught.value))
    assert "raise RuntimeError('inside generated code')" in text
