"""pcdsl: a language and compiler for layered energy models trained with equilibrium propagation.

Pipeline (data flows one way):
    text -> parse (Lark) -> lower -> IR (pydantic) -> check (SymPy) -> plan -> generate (PyTorch source) -> run

Python API (pcdsl/api.py; docs/api.md):
    load(path_or_name, **sizes)      the compiled Model class (a torch.nn.Module subclass)
    load_text(text, **sizes)         the same from model text
    compile_source(text, **sizes)    the generated module's source
    describe(path_or_name, **sizes)  the `pcdsl check --json` report (`pcdsl.check` is the checker stage)
    models()                         the shipped models
    PcdslError                       every diagnostic about a model
"""

__version__ = "0.2.0"

from .api import compile_source, describe, load, load_text, models  # noqa: E402
from .diagnostics import PcdslError  # noqa: E402

__all__ = ["__version__", "load", "load_text", "compile_source", "describe", "models", "PcdslError"]
