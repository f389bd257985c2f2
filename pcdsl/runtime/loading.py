# ---------------------------------------------------------------------------------------------
# Turning generated source text into a model class.
#
# A compiled model is a standalone Python file that defines `class Model(torch.nn.Module)`. The
# runtime never imports it from a path: it executes the text (the compiler's output, or a run
# directory's model.py) in a fresh module object. The text is registered with `linecache` so that
# tracebacks from inside the generated code show its lines.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import hashlib
import linecache
import sys
import types

import torch


class ModelSourceError(Exception):
    """The generated source does not define a usable `Model` class; the message says why."""


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def load_model_class(source: str, module_name: str = "pcdsl_generated") -> type:
    """Execute `source` as the module `module_name` and return its `Model` class.

    The module is also entered in sys.modules (replacing an earlier one of the same name) so that
    pickling, dataclasses and torch.compile can find the class's module."""
    filename = f"<{module_name}:{source_sha256(source)[:12]}>"
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as error:
        raise ModelSourceError(f"the generated model source does not compile: line {error.lineno}: "
                               f"{error.msg}") from error
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(module_name)
    module.__file__ = filename
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except Exception as error:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
        raise ModelSourceError(f"running the generated model source failed: "
                               f"{type(error).__name__}: {error}") from error
    model_class = module.__dict__.get("Model")
    if model_class is None:
        raise ModelSourceError("the generated model source defines no `Model` class")
    if not (isinstance(model_class, type) and issubclass(model_class, torch.nn.Module)):
        raise ModelSourceError(f"`Model` in the generated source is {model_class!r}, "
                               "not a torch.nn.Module subclass")
    return model_class
