# ---------------------------------------------------------------------------------------------
# The FLOP count of a plan: what each phase of the compiled module really computes.
#
# Only matrix products count (dense, conv, conv_transpose, their adjoints and their weight
# gradients: 2 FLOPs per multiply-add; elementwise work, pooling and reductions are left out, as
# every TFLOP/s figure of the field leaves them out). Each weighted operator's multiply-adds per
# example are recorded by the checker (ParamInfo.macs) and its adjoint and weight gradient cost
# the same, so a phase costs the sum over the matrix nodes it evaluates.
#
#   centered EP step   the free pass + two nudged phases of K iterations (the peeled first
#                      iterations only for the states they move, the first layer's pre-activation
#                      never again) + the local products (the first layer's once for both phases)
#   backprop step      the forward pass + for every matrix product of it, the weight gradient and,
#                      unless its input is the data itself, the input gradient
#
# The ratio of the two is what METHOD.md section 6's (4K+3)/3 becomes for this network;
# `pcdsl bench` compares measured times against it.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ops import TensorOp, WeightGrad
from ..ops.linear import (ConvAdjoint, ConvTransposeAdjoint, DenseAdjoint, WeightedOp)
from .program import Assign, HalfSweep, Plan

MATRIX_NODES = (WeightedOp, DenseAdjoint, ConvAdjoint, ConvTransposeAdjoint, WeightGrad)


@dataclass(frozen=True)
class StepFlops:
    """FLOPs per example of one training step, by part."""
    free: int
    nudged: int            # both nudged phases (centered), or the one (one-sided)
    products: int          # dE/dθ from the factors
    backprop: int          # the backprop step on the same network

    @property
    def ep(self) -> int:
        return self.free + self.nudged + self.products

    @property
    def ratio(self) -> float:
        return self.ep / self.backprop


class _Counter:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.macs = {p.symbol: p.macs for p in plan.model.params.values()}
        self.state_or_param = {plan.model.symbols[s] for s in plan.model.states} | set(self.macs)

    def expr(self, expr: sp.Expr) -> int:
        return sum(2 * self.macs[node.args[0]] for node in sp.preorder_traversal(expr)
                   if isinstance(node, MATRIX_NODES))

    def assigns(self, assigns: list[Assign]) -> int:
        return sum(self.expr(a.value) for a in assigns)

    def sweeps(self, sweeps: list[HalfSweep]) -> int:
        total = 0
        for sweep in sweeps:
            total += self.assigns(sweep.body)
            for update in sweep.updates:
                total += self.expr(update.value) + (self.expr(update.velocity.value) if update.velocity else 0)
        return total

    def backward(self, assigns: list[Assign]) -> int:
        """Autograd through these assignments: per matrix product, the weight gradient and the
        gradient of its tensor operand unless that is the data (it needs none)."""
        defs = self.plan.definitions
        total = 0
        for assign in assigns:
            for node in sp.preorder_traversal(assign.value):
                if isinstance(node, MATRIX_NODES) and not isinstance(node, WeightGrad):
                    operand = node.args[1]
                    needs_grad = bool(defs.bases(operand) & self.state_or_param) if isinstance(operand, sp.Basic) else False
                    total += 2 * self.macs[node.args[0]] * (1 + needs_grad)
        return total


def step_flops(plan: Plan, steps: int, scheme: str = "centered", free_steps: int | None = None) -> StepFlops:
    """FLOPs per example of an EP step at `steps` iterations per phase, and of a backprop step."""
    count = _Counter(plan)
    phases = 2 if scheme == "centered" else 1
    factors = plan.factors
    products = 0
    for product in factors.products:
        per_phase = count.expr(product.node)
        products += per_phase if product.invariant_input else phases * per_phase
    if plan.nudged is not None:
        nudged = plan.nudged
        peeled = nudged.peeled[:steps]
        per_phase = sum(count.sweeps(it.sweeps) for it in peeled)
        if steps > len(nudged.peeled):
            per_phase += count.assigns(nudged.before_loop) + (steps - len(nudged.peeled)) * count.sweeps(nudged.loop)
        per_phase += count.assigns(nudged.epilogue) + count.assigns(factors.cotangents) + count.expr(factors.energy)
        free = count.assigns(plan.forward.body)
        backprop = free + count.backward(plan.forward.body)
        return StepFlops(free, phases * per_phase, products, backprop)
    # a relaxation model: the free phase relaxes from rest, each nudged phase relaxes again
    relaxation = plan.relaxation
    per_iteration = count.sweeps(relaxation.sweeps)
    setup = count.assigns(relaxation.invariants) + count.assigns(relaxation.prologue)
    free_steps = plan.model.ir.train.free_steps if free_steps is None else free_steps
    free = setup + free_steps * per_iteration
    per_phase = (setup + steps * per_iteration + count.assigns(factors.body) + count.assigns(factors.cotangents)
                 + count.expr(factors.energy))
    # backprop through the free relaxation: every matrix product of every iteration (counting the
    # first iteration's products with the initial states, which need no gradient, as if they did:
    # about 1 % too many for hopfield_tiny)
    body = relaxation.invariants + relaxation.prologue
    backward = count.backward(body)
    for sweep in relaxation.sweeps:
        backward += free_steps * count.backward(sweep.body + [Assign(u.symbol, u.value) for u in sweep.updates])
    return StepFlops(free, phases * per_phase, products, free + backward)
