"""pcdsl: a language and compiler for layered energy models trained with equilibrium propagation.

Pipeline (data flows one way):
    text -> parse (Lark) -> lower -> IR (pydantic) -> check (SymPy) -> generate (PyTorch source) -> run
"""

__version__ = "0.2.0"
