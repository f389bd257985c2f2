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

    def expr(self, expr: sp.Expr) -> int:
        return sum(2 * self.macs[node.args[0]] for node in sp.preorder_traversal(expr)
                   if isinstance(node, MATRIX_NODES))

    def assigns(self, assigns: list[Assign]) -> int:
        return sum(self.expr(a.value) for a in assigns)

    def sweeps(self, sweeps: list[HalfSweep]) -> int:
        """The half-sweeps' own products and their updates'."""
        total = 0
        for sweep in sweeps:
            total += self.assigns(sweep.body)
            for update in sweep.updates:
                total += self.expr(update.value) + (self.expr(update.velocity.value) if update.velocity else 0)
        return total

    def backward(self, program: list[Assign], output: sp.Symbol) -> int:
        """Autograd through a straight-line program (names may be reassigned) for a loss that
        reads `output`: per matrix product on the loss's path, the weight gradient, and the
        gradient of its tensor operand if that needs one (it reads a parameter or a value that
        does: not the data, not a relaxation's initial states)."""
        params = set(self.macs)
        # forward: which values need a gradient, at each assignment
        needing: set = set()
        operand_needs = []
        for assign in program:
            reads = assign.value.free_symbols
            nodes = [n for n in sp.preorder_traversal(assign.value)
                     if isinstance(n, MATRIX_NODES) and not isinstance(n, WeightGrad)]
            operand_needs.append([bool(n.args[1].free_symbols & (needing | params)) for n in nodes])
            if reads & (needing | params):
                needing.update(_targets(assign))
            else:
                needing.difference_update(_targets(assign))
        # backward: which assignments the loss depends on
        live, total = {output}, 0
        for assign, needs in zip(reversed(program), reversed(operand_needs)):
            if not live & set(_targets(assign)):
                continue
            live.difference_update(_targets(assign))
            live |= assign.value.free_symbols
            nodes = [n for n in sp.preorder_traversal(assign.value)
                     if isinstance(n, MATRIX_NODES) and not isinstance(n, WeightGrad)]
            total += sum(2 * self.macs[n.args[0]] * (1 + need) for n, need in zip(nodes, needs))
        return total

    def relaxation_program(self, steps: int) -> list[Assign]:
        """relax() from the initial states for `steps` asynchronous iterations, unrolled."""
        relaxation = self.plan.relaxation
        program = list(relaxation.invariants) + list(relaxation.prologue)
        for _ in range(steps):
            for sweep in relaxation.sweeps:
                program += sweep.body
                for update in sweep.updates:
                    program += ([update.velocity] if update.velocity else []) + [Assign(update.symbol, update.value)]
        return program

    def factors(self) -> int:
        """The factors of dE/dθ at states computed from scratch (factors())."""
        factors = self.plan.factors
        return self.assigns(factors.body) + self.assigns(factors.cotangents) + self.expr(factors.energy)


def _targets(assign: Assign) -> tuple:
    return assign.target if isinstance(assign.target, tuple) else (assign.target,)


def step_flops(plan: Plan, steps: int, scheme: str = "centered", free_steps: int | None = None) -> StepFlops:
    """FLOPs per example of an EP step at `steps` iterations per phase, and of a backprop step."""
    count = _Counter(plan)
    nudged_phases = 2 if scheme == "centered" else 1
    factors = plan.factors
    feedforward = plan.nudged is not None
    # the phases whose factors enter the products: a PCN's free state has none (dE/dθ = 0 there)
    phases = nudged_phases if feedforward else 2
    products = 0
    for product in factors.products:
        per_phase = count.expr(product.node)
        products += per_phase if product.invariant_input else phases * per_phase
    if feedforward:
        nudged = plan.nudged
        per_phase = sum(count.sweeps(it.sweeps) for it in nudged.peeled[:steps])
        if steps > len(nudged.peeled):
            per_phase += count.assigns(nudged.before_loop) + (steps - len(nudged.peeled)) * count.sweeps(nudged.loop)
        per_phase += count.assigns(nudged.epilogue) + count.assigns(factors.cotangents) + count.expr(factors.energy)
        free = count.assigns(plan.forward.body)
        output = plan.model.symbols[plan.model.ir.cost.output]
        backprop = free + count.backward(plan.forward.body, output)
        return StepFlops(free, nudged_phases * per_phase, products, backprop)
    # a relaxation model: the free phase relaxes from rest, each nudged phase relaxes again from
    # the free state; a one-sided scheme also forms the factors at the free state
    relaxation = plan.relaxation
    setup = count.assigns(relaxation.invariants) + count.assigns(relaxation.prologue)
    per_iteration = count.sweeps(relaxation.sweeps)
    free_steps = plan.model.ir.train.free_steps if free_steps is None else free_steps
    free = setup + free_steps * per_iteration
    nudged = nudged_phases * (setup + steps * per_iteration) + 2 * count.factors()
    output = plan.model.symbols[plan.model.ir.cost.output]
    return StepFlops(free, nudged, products, free + count.backward(count.relaxation_program(free_steps), output))
