# ---------------------------------------------------------------------------------------------
# SymPy tensor-algebra expressions -> PyTorch source text.
#
# Arithmetic is printed here; every operator prints itself (`torch_text`, pcdsl/ops), through
# the small interface below (`text`, `operand`, `postfix`, `param`). Symbols print as the
# identifiers the module's namespace gave them (codegen/names.py), parameters as `self.<attr>`.
# Two printing choices a careful person makes by hand: a bias added to a dense/conv output is
# fused into F.linear / F.conv2d, and sums read with the plain terms first, the subtracted last.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Callable, Optional

import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.pycode import PythonCodePrinter

from ..ops import TensorOp, WeightedOp
from ..ops.base import number_text
from ..ops.linear import DenseAdjoint, DenseWeightGrad
from .text import signed_sum

# operators whose text is infix (`v @ W`): they need parentheses before `.method()`
INFIX = (DenseAdjoint, DenseWeightGrad)


class TorchPrinter(PythonCodePrinter):
    """`name_of(symbol)` gives a symbol's code text; `bias_of(symbol)` a parameter's ParamInfo
    when the symbol is a bias (None otherwise)."""

    def __init__(self, name_of: Callable[[sp.Symbol], str], bias_view: Callable[[sp.Symbol], Optional[tuple]],
                 batch_like: str = "x", mod_node: Optional[sp.Expr] = None):
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self.name_of = name_of
        self.batch_like = batch_like      # a tensor with the batch's size, device and dtype (the input)
        self.bias_view = bias_view        # a bias parameter's broadcast shape, else None
        self.mod_node = mod_node          # the own activation act(a): printed `(a if mod else act(a))`
        self.helpers_used: set[str] = set()
        self.in_product = False

    def with_mod_node(self, node: Optional[sp.Expr]) -> "TorchPrinter":
        printer = TorchPrinter(self.name_of, self.bias_view, self.batch_like, node)
        printer.helpers_used = self.helpers_used     # shared: the module collects them
        return printer

    def with_names(self, name_of: Callable[[sp.Symbol], str]) -> "TorchPrinter":
        """The same printer with other identifiers for symbols (a phase's factors: phase["h1"])."""
        printer = TorchPrinter(name_of, self.bias_view, self.batch_like, self.mod_node)
        printer.helpers_used = self.helpers_used
        return printer

    # ------------------------------------------------------------------ the operator interface
    def text(self, expr) -> str:
        saved, self.in_product = self.in_product, False
        try:
            return self._print(expr)
        finally:
            self.in_product = saved

    def param(self, symbol: sp.Symbol) -> str:
        return self.name_of(symbol)

    def operand(self, expr) -> str:
        """Text that can stand next to a binary operator such as `@`."""
        text = self.text(expr)
        simple = (expr.is_Atom and not (expr.is_number and expr < 0)) or \
            (isinstance(expr, TensorOp) and not isinstance(expr, INFIX))
        return text if simple and not text.startswith("-") else f"({text})"

    def postfix(self, expr) -> str:
        """Text that can take `.method()` after it."""
        return self.operand(expr)

    # ------------------------------------------------------------------ atoms
    def _print_Symbol(self, expr):
        text = self.name_of(expr)
        view = self.bias_view(expr)
        if view is not None and len(view) > 1:
            return f"{text}.view({', '.join(str(d) for d in view)})"
        return text

    def _print_Rational(self, expr):
        return number_text(expr)

    _print_Half = _print_Rational

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_Float(self, expr):
        return repr(float(expr))

    # ------------------------------------------------------------------ arithmetic
    def _print_Add(self, expr, order=None):
        args = list(expr.args)
        head = None
        linear = next((a for a in args if isinstance(a, WeightedOp)), None)
        bias = next((a for a in args if isinstance(a, sp.Symbol) and self.bias_view(a) is not None), None)
        if linear is not None and bias is not None:
            args.remove(linear)
            args.remove(bias)
            head = linear.torch_text(self, bias=bias)
        return signed_sum(([head] if head else []) + self._ordered_texts(args))

    def _ordered_texts(self, args) -> list[str]:
        """Each summand printed once; sums read best with the plain terms first (the mod-PGD
        node, then symbols) and the subtracted ones last."""
        printed = [(self.text(arg), arg) for arg in args]
        printed.sort(key=lambda pair: (pair[0].startswith("-"),
                                       0 if pair[1] == self.mod_node else 1 if pair[1].is_Symbol else 2))
        return [text for text, _ in printed]

    def _print_Mul(self, expr):
        factors = sp.Mul.make_args(expr)
        masks = [f for f in factors if hasattr(f, "condition")]
        if masks and len(masks) < len(factors):
            # a 0/1 mask times the rest: select instead of multiplying by a converted boolean
            rest = sp.Mul(*(f for f in factors if f not in masks))
            condition = " & ".join(m.condition(self) for m in masks)
            return f"torch.where({condition}, {self.text(rest)}, 0.0)"
        coeff, rest = expr.as_coeff_Mul()
        sign = "-" if coeff < 0 else ""
        coeff = abs(coeff)
        numerator, denominator = [], []
        saved, self.in_product = self.in_product, True
        try:
            # scalar constants of the module first: self.RELAX_STEP * grad_h, not grad_h * self.RELAX_STEP
            factors = sorted(sp.Mul.make_args(rest), key=lambda f: not (f.is_Symbol and f.name.startswith("aux:relax")))
            for factor in factors:
                if isinstance(factor, sp.Pow) and factor.exp.is_number and factor.exp < 0:
                    denominator.append(self._factor(factor.base ** -factor.exp))
                else:
                    numerator.append(self._factor(factor))
        finally:
            self.in_product = saved
        if coeff.is_Rational and coeff.q != 1 and coeff.p == 1 and numerator:
            denominator.insert(0, str(float(coeff.q)))
        elif coeff != 1 or not numerator:
            numerator.insert(0, self._print(coeff))
        text = " * ".join(numerator)
        if denominator:
            text += " / " + (denominator[0] if len(denominator) == 1 else "(" + " * ".join(denominator) + ")")
        return sign + text

    def _factor(self, expr) -> str:
        text = self._print(expr)
        return f"({text})" if isinstance(expr, sp.Add) or isinstance(expr, INFIX) else text

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent.is_Integer and exponent > 0:
            saved, self.in_product = self.in_product, False
            try:
                return f"{self.parenthesize(base, precedence(expr))} ** {int(exponent)}"
            finally:
                self.in_product = saved
        return super()._print_Pow(expr, rational)

    # ------------------------------------------------------------------ operators
    def _print_Function(self, expr):
        # SymPy's printer skips base classes between a Function subclass and Function, so every
        # operator node arrives here
        if not isinstance(expr, TensorOp):
            return super()._print_Function(expr)
        self.helpers_used.update(expr.helpers)
        if self.mod_node is not None and expr == self.mod_node:
            inner = self.text(expr.args[0])
            return f"({inner} if mod else {expr.torch_text(self)})"
        return expr.torch_text(self)
