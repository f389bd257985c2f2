# ---------------------------------------------------------------------------------------------
# Math-like rendering of the tensor algebra for people: `pcdsl check`, generated docstrings.
#   Linear(W, a) -> W·a     LinearT(W, v) -> Wᵀ·v     Step(a) -> [a>0]     MaxUnpool -> unpool
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter


class PlainPrinter(StrPrinter):
    def _print_Linear(self, expr):
        return f"{expr.args[0]}·{self._arg(expr.args[1])}"

    def _print_LinearT(self, expr):
        return f"{expr.args[0]}ᵀ·{self._arg(expr.args[1])}"

    def _arg(self, expr):
        text = self._print(expr)
        return text if expr.is_Atom or isinstance(expr, sp.Function) else f"({text})"

    def _print_Relu(self, expr):
        return f"relu({self._print(expr.args[0])})"

    def _print_HardSigmoid(self, expr):
        return f"clamp01({self._print(expr.args[0])})"

    def _print_Clamp(self, expr):
        return f"clamp({self._print(expr.args[0])}, {expr.args[1]}, {expr.args[2]})"

    def _print_Step(self, expr):
        return f"[{self._print(expr.args[0])}>0]"

    def _print_BoxMask(self, expr):
        return f"[0<{self._print(expr.args[0])}<1]"

    def _print_MaxPool(self, expr):
        return f"maxpool({self._print(expr.args[0])})"

    def _print_MaxUnpool(self, expr):
        return f"unpool({self._print(expr.args[0])} @ {self._print(expr.args[1])})"

    def _print_AvgPool(self, expr):
        return f"avgpool({self._print(expr.args[0])})"

    def _print_AvgPoolT(self, expr):
        return f"avgpoolᵀ({self._print(expr.args[0])})"

    def _print_Flatten(self, expr):
        return f"flatten({self._print(expr.args[0])})"

    def _print_Unflatten(self, expr):
        return f"unflatten({self._print(expr.args[0])})"

    def _print_Total(self, expr):
        return f"sum({self._print(expr.args[0])})"

    def _print_CostGrad(self, expr):
        return f"∂C/∂{expr.args[0]}"

    def _print_Rational(self, expr):
        return str(float(expr)) if expr.q != 1 else str(expr.p)

    _print_Half = _print_Rational


def plain(expr: sp.Expr) -> str:
    return PlainPrinter().doprint(expr)
