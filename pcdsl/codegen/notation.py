# ---------------------------------------------------------------------------------------------
# Math-like rendering of the tensor algebra for people: `pcdsl check`, generated docstrings.
#   dense -> W·a    its adjoint -> Wᵀ·v    relu' -> [a>0]    max-unpool -> unpool(v @ z)
# Every operator renders itself (its `plain_text`); symbols show their user names, or the
# identifiers of a generated module when a namespace is given.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Callable, Optional

import sympy as sp
from sympy.printing.str import StrPrinter

from ..check.symbols import user_name
from ..ops import TensorOp
from .text import signed_sum


class PlainPrinter(StrPrinter):
    def __init__(self, name_of: Optional[Callable[[sp.Symbol], str]] = None):
        super().__init__()
        self.name_of = name_of or user_name

    # the interface operators print through
    def text(self, expr) -> str:
        return self._print(expr)

    def operand(self, expr) -> str:
        text = self._print(expr)
        return text if expr.is_Atom or isinstance(expr, TensorOp) else f"({text})"

    def _print_Add(self, expr, order=None):
        # plain terms first, subtracted ones last: a_o - beta*∂C/∂o, not -beta*∂C/∂o + a_o
        terms = sorted(sp.Add.make_args(expr), key=lambda t: t.could_extract_minus_sign())
        return signed_sum([self._print(term) for term in terms])

    def _print_Symbol(self, expr):
        return self.name_of(expr)

    def _print_Function(self, expr):
        # SymPy's printer skips base classes between a Function subclass and Function, so every
        # operator node arrives here
        return expr.plain_text(self) if isinstance(expr, TensorOp) else super()._print_Function(expr)

    def _print_Rational(self, expr):
        return str(float(expr)) if expr.q != 1 else str(expr.p)

    _print_Half = _print_Rational


def plain(expr: sp.Expr, name_of: Optional[Callable[[sp.Symbol], str]] = None) -> str:
    return PlainPrinter(name_of).doprint(expr)
