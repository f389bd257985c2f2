# ---------------------------------------------------------------------------------------------
# SymPy tensor-algebra expressions -> PyTorch source text.
#
# One method per operator of pcdsl.check.algebra. Symbols print as local variables (states,
# named intermediates), `self.<name>` (parameters) or `label`/`beta`. A bias added to a dense
# or conv output is fused into F.linear / F.conv2d, the way one writes it by hand.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Optional

import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.pycode import PythonCodePrinter

from ..check.algebra import (Linear,
                             LinearT)
from ..check.model import CheckedModel


class TorchPrinter(PythonCodePrinter):
    def __init__(self, model: CheckedModel, mod_node: Optional[sp.Expr] = None):
        super().__init__({"fully_qualified_modules": False, "standard": "python3"})
        self.model = model
        self.mod_node = mod_node        # own activation act(a): printed `(a if mod else act(a))`
        self.label = model.ir.cost.label

    # ------------------------------------------------------------------ atoms
    def _print_Symbol(self, expr):
        name = expr.name
        param = self.model.params.get(name)
        if param is not None:
            if param.kind == "bias" and len(param.broadcast) > 1:
                return f"self.{name}.view({', '.join(str(d) for d in param.broadcast)})"
            return f"self.{name}"
        if name == self.label:
            return "label"
        return name

    def _print_Rational(self, expr):
        return repr(float(expr))

    _print_Half = _print_Rational

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Infinity(self, expr):
        return "None"

    _print_NegativeInfinity = _print_Infinity

    # ------------------------------------------------------------------ arithmetic
    def _print_Add(self, expr, order=None):
        fused = self._fuse_bias(expr)
        if fused is not None:
            return fused
        text = ""
        for arg in self._order(expr.args):
            term = self._print(arg)
            if not text:
                text = term
            elif term.startswith("-"):
                text += " - " + term[1:]
            else:
                text += " + " + term
        return text

    def _fuse_bias(self, expr: sp.Add) -> Optional[str]:
        """b + W(a) [+ more] -> F.linear(a, W, b) [+ more]."""
        args = list(expr.args)
        linear = next((a for a in args if isinstance(a, Linear)), None)
        bias = next((a for a in args if isinstance(a, sp.Symbol)
                     and getattr(self.model.params.get(a.name), "kind", None) == "bias"), None)
        if linear is None or bias is None:
            return None
        args.remove(linear)
        args.remove(bias)
        head = self._linear(linear, bias)
        if not args:
            return head
        text = head
        for arg in self._order(args):
            term = self._print(arg)
            text += f" - {term[1:]}" if term.startswith("-") else f" + {term}"
        return text

    def _print_Mul(self, expr):
        coeff, rest = expr.as_coeff_Mul()
        sign = "-" if coeff < 0 else ""
        coeff = abs(coeff)
        numerator, denominator = [], []
        for factor in sp.Mul.make_args(rest):
            if isinstance(factor, sp.Pow) and factor.exp.is_number and factor.exp < 0:
                denominator.append(self._factor(factor.base ** -factor.exp))
            else:
                numerator.append(self._factor(factor))
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
        return f"({text})" if isinstance(expr, sp.Add) else text

    def _postfix(self, expr) -> str:
        """Text that can take `.method()` after it."""
        text = self._print(expr)
        infix = isinstance(expr, LinearT) and self.model.params[expr.args[0].name].kind == "dense"
        simple = (expr.is_Atom or isinstance(expr, sp.Function)) and not infix
        return text if simple and not text.startswith("-") else f"({text})"

    def _order(self, args):
        """Sums read best with the plain terms first and the subtracted ones last."""
        def key(arg):
            text = self._print(arg)
            return (text.startswith("-"), 0 if arg == self.mod_node else 1 if arg.is_Symbol else 2)
        return sorted(args, key=key)

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent == 2:
            return f"{self.parenthesize(base, precedence(expr))} ** 2"
        return super()._print_Pow(expr, rational)

    # ------------------------------------------------------------------ operators
    def _linear(self, expr: Linear, bias: Optional[sp.Symbol] = None) -> str:
        weight, arg = expr.args
        info = self.model.params[weight.name]
        bias_text = f", self.{bias.name}" if bias is not None else ""
        if info.kind == "dense":
            return f"F.linear({self._print(arg)}, self.{weight.name}{bias_text})"
        options = ""
        if info.stride != 1:
            options += f", stride={info.stride}"
        if info.padding:
            options += f", padding={info.padding}"
        if bias is None and options:
            bias_text = ", None"
        return f"F.conv2d({self._print(arg)}, self.{weight.name}{bias_text}{options})"

    def _print_Linear(self, expr):
        return self._linear(expr)

    def _print_LinearT(self, expr):
        weight, v = expr.args
        info = self.model.params[weight.name]
        if info.kind == "dense":
            return f"{self._factor(v) if not isinstance(v, sp.Mul) else '(' + self._print(v) + ')'} @ self.{weight.name}"
        # output_padding recovers input sizes that the strided conv rounded away
        extra = []
        if info.stride != 1:
            extra.append(f"stride={info.stride}")
        if info.padding:
            extra.append(f"padding={info.padding}")
        h_in = info.in_shape[1]
        h_out = info.out_shape[1]
        output_padding = h_in - ((h_out - 1) * info.stride - 2 * info.padding + info.kernel)
        if output_padding:
            extra.append(f"output_padding={output_padding}")
        tail = "".join(", " + e for e in extra)
        return f"F.conv_transpose2d({self._print(v)}, self.{weight.name}{tail})"

    def _print_Relu(self, expr):
        if self.mod_node is not None and expr == self.mod_node:
            inner = self._print(expr.args[0])
            return f"({inner} if mod else torch.relu({inner}))"
        return f"torch.relu({self._print(expr.args[0])})"

    def _print_HardSigmoid(self, expr):
        if self.mod_node is not None and expr == self.mod_node:
            inner = self._print(expr.args[0])
            return f"({inner} if mod else torch.clamp({inner}, 0.0, 1.0))"
        return f"torch.clamp({self._print(expr.args[0])}, 0.0, 1.0)"

    def _print_Clamp(self, expr):
        value, low, high = expr.args
        return f"torch.clamp({self._print(value)}, {self._print(low)}, {self._print(high)})"

    def _print_Step(self, expr):
        return f"({self._print(expr.args[0])} > 0)"

    def _print_BoxMask(self, expr):
        a = self._print(expr.args[0])
        return f"(({a} > 0) & ({a} < 1))"

    def _print_MaxPool(self, expr):
        a, k, stride = expr.args
        return f"F.max_pool2d({self._print(a)}, {k}{'' if stride == k else f', {stride}'})"

    def _print_MaxUnpool(self, expr):
        v, a, k, stride = expr.args
        return f"max_unpool({self._print(v)}, {self._print(a)}, {k}, {stride})"

    def _print_AvgPool(self, expr):
        a, k, stride = expr.args
        return f"F.avg_pool2d({self._print(a)}, {k}{'' if stride == k else f', {stride}'})"

    def _print_AvgPoolT(self, expr):
        v, a, k, stride = expr.args
        return f"avg_pool_adjoint({self._print(v)}, {self._print(a)}, {k}, {stride})"

    def _print_Flatten(self, expr):
        return f"{self._postfix(expr.args[0])}.flatten(1)"

    def _print_Unflatten(self, expr):
        v, like = expr.args
        shape = self.model.shape_of(like).value
        return f"{self._postfix(v)}.unflatten(1, {tuple(shape)})"

    def _print_Total(self, expr):
        return f"total({self._print(expr.args[0])})"

    def _print_CostGrad(self, expr):
        output, _ = expr.args
        return f"self.cost_grad({self._print(output)}, label)"
