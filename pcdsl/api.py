# ---------------------------------------------------------------------------------------------
# The Python API: what a researcher calls from a notebook or a script of their own.
#
#   pcdsl.load("vgg10_imagenet", S=64)    the compiled Model class, a torch.nn.Module subclass
#   pcdsl.load_text(text)                 the same from model text
#   pcdsl.compile_source(text)            the generated module's source, as `pcdsl compile` writes it
#   pcdsl.describe(path_or_name)          what `pcdsl check --json` reports, as a dict
#   pcdsl.models()                        the shipped models: name -> one-line description
#
# Every problem with a model is raised as pcdsl.PcdslError (a code, a message, a position; its
# render() prints it the way the command line does). The class `load` returns is the generated
# Model with the runtime's estimators added as methods (ep_gradients, bp_gradients, using the
# file's train block as defaults) and that train block as `train_config`.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional


def _set_items(sizes: dict[str, int], overrides: Optional[dict[str, Any]]) -> list[str]:
    items = [f"{name}={value}" for name, value in sizes.items()]
    items += [f"{key}={_override_text(value)}" for key, value in (overrides or {}).items()]
    return items


def _override_text(value) -> str:
    return json.dumps(value) if isinstance(value, (list, bool)) else str(value)


def _model_class(compiled):
    from .runtime.estimators import Estimators
    from .runtime.loading import load_model_class, source_sha256

    module_name = f"pcdsl_model_{compiled.ir.name}_{source_sha256(compiled.source)[:12]}"
    generated = load_model_class(compiled.source, module_name=module_name)
    model_class = type("Model", (Estimators, generated), {
        "__module__": generated.__module__, "__qualname__": "Model", "__doc__": generated.__doc__,
        "train_config": compiled.ir.train})
    # the module's `Model` is the class users hold, so pickling by reference finds it
    sys.modules[module_name].Model = model_class
    return model_class


def load(path_or_name: str | Path, *, overrides: Optional[dict[str, Any]] = None, **sizes: int) -> type:
    """The compiled Model class of a model file, or of a shipped model given by name.

    `sizes` set the file's `size` declarations (`S=64`); `overrides` replace train-block keys
    (`{"beta": 0.01, "steps": 20}`), exactly as `pcdsl ... --set` does."""
    from .pipeline import compile_file
    return _model_class(compile_file(path_or_name, _set_items(sizes, overrides)))


def load_text(text: str, *, file: str = "<text>", overrides: Optional[dict[str, Any]] = None,
              **sizes: int) -> type:
    """The compiled Model class of model text (`file` names it in diagnostics)."""
    from .pipeline import compile_text
    return _model_class(compile_text(text, file, _set_items(sizes, overrides)))


def compile_source(text: str, *, file: str = "<text>", overrides: Optional[dict[str, Any]] = None,
                   **sizes: int) -> str:
    """The generated PyTorch module for model text, as `pcdsl compile` writes it."""
    from .pipeline import compile_text
    return compile_text(text, file, _set_items(sizes, overrides)).source


def describe(path_or_name: str | Path, *, overrides: Optional[dict[str, Any]] = None, **sizes: int) -> dict:
    """The report of `pcdsl check --json`: states and shapes, parameters, derived update rules
    (closed form or gradient steps, and why), update groups, the free phase."""
    from .pipeline import check_file
    from .report import model_report
    return model_report(check_file(path_or_name, _set_items(sizes, overrides)).checked)


def models() -> dict[str, str]:
    """The reference models shipped with pcdsl: name -> its description."""
    from .shipped import shipped_models
    return shipped_models()
