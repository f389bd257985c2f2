# ---------------------------------------------------------------------------------------------
# dE/dθ for every parameter, derived as an explicit local product.
#
# A parameter appears in one operator of one term (each `dense`, `conv` and `bias` creates its
# own), so the gradient of the energy summed over the batch is one bilinear node: the cotangent
# v that reaches the operator's output (for a PCN term, the prediction error through the
# activation's derivative and the pool's adjoint) times the operator's input u (WeightGrad), or
# v summed over the batch and the broadcast dimensions (BiasGrad). Kept in that form, the plan
# can reuse v from the relaxation, share it between a weight and its bias, and, for weights
# whose input is the same in every phase (the first layer reads only x), combine the phases'
# cotangents before forming one product.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ops import BiasGrad, Filled, TensorOp, WeightGrad
from .algebra import Definitions, ShapeOf, energy_gradient
from .build import ParamInfo
from .terms import TermInfo


@dataclass(frozen=True)
class ParamGradient:
    """dE/dθ summed over the batch = coefficient * node."""
    param: str
    coefficient: sp.Expr
    node: TensorOp                 # a WeightGrad (cotangent, input) or a BiasGrad (cotangent)

    @property
    def cotangent(self) -> sp.Expr:
        return self.node.args[1] if isinstance(self.node, WeightGrad) else self.node.args[0]

    @property
    def input(self):
        """The operator's input the product reads (None for a bias)."""
        return self.node.input if isinstance(self.node, WeightGrad) else None


def derive_param_gradient(param: ParamInfo, terms: list[TermInfo], defs: Definitions,
                          shape_of: ShapeOf) -> ParamGradient:
    holding = [t for t in terms if param.symbol in defs.bases(t.energy)]
    total = sp.Add(*(energy_gradient(t.energy, param.symbol, defs, shape_of) for t in holding))
    if param.kind == "bias":
        v = total
        if v.is_number:       # sum(c * bias): the same cotangent at every position
            v = Filled(v, *(sp.Integer(d) for d in param.context))
        node = BiasGrad(v, sp.Integer(len(param.context)))
    else:
        parts = [term.as_coeff_Mul() for term in sp.Add.make_args(total)]
        if not all(isinstance(n, WeightGrad) for _, n in parts) or \
                len({(n.func, n.args[0], n.args[2:]) for _, n in parts}) != 1:
            raise TypeError(f"the gradient of {param.name} is not one weight product: {total}")
        v = sp.Add(*(c * n.cotangent for c, n in parts))
        node = parts[0][1].with_cotangent(v)
    coefficient, node = node.as_coeff_Mul() if isinstance(node, sp.Mul) else (sp.Integer(1), node)
    return ParamGradient(param.name, coefficient, node)
