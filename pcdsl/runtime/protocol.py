# ---------------------------------------------------------------------------------------------
# The contract between a generated model module and the runtime.
#
# `pcdsl compile` writes one Python file per model that defines `class Model(torch.nn.Module)`.
# The runtime (estimators, trainers, evaluation, gradcheck) drives any such class only through
# the members listed here, so a hand-written module that follows this protocol trains the same
# way. The learning algorithms are not in the module: pcdsl.runtime.estimators composes them
# from these primitives (and `pcdsl.load` returns the class with them as methods).
#
# Conventions
#   x       input batch, shape [B, *INPUT_SHAPE], float
#   label   class indices, shape [B], int64 (the cost one-hot encodes them to NUM_CLASSES)
#   states  dict: free-state name (as in the model file) -> tensor [B, *shape], in STATES order
#   beta    signed nudging strength; beta = 0 is the free phase
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

States = dict[str, torch.Tensor]


@runtime_checkable
class CompiledModel(Protocol):
    NAME: str                     # the model's name in the .pc file
    SOURCE: str                   # the .pc file it was compiled from
    SOURCE_SHA256: str
    INPUT: str                    # the input's name (the key of its prediction in a generative model)
    INPUT_SHAPE: tuple[int, ...]  # per-example input shape
    STATES: tuple[str, ...]       # free states, in declaration order
    STATE_SHAPES: dict[str, tuple[int, ...]]
    OUTPUT: str | None            # the state the cost reads (its values are the logits); None for a
    NUM_CLASSES: int | None       # generative model (its input predicted), which has no output,
    COST: str | None              # classes or cost; "squared_error" | "cross_entropy"
    FEEDFORWARD: bool             # True when the free equilibrium is the feedforward pass
    UPDATE_GROUPS: tuple[tuple[str, ...], ...]  # colour groups, in traversal order
    UPDATE_RULES: dict[str, str]  # state -> "closed" (alpha = 1 projected step) | "gradient"
    FREE_STEPS: int               # free-phase iterations of a relaxation model
    RELAX_STEP: float             # step size of the gradient-rule states
    RELAX_MOMENTUM: float

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter: U(-c, c), c = gain * sqrt(1 / fan)."""

    def forward(self, x: torch.Tensor, steps: int | None = None) -> States:
        """The free phase (beta = 0). A feedforward pass for PCNs; otherwise `steps` relaxation
        iterations from `initial_states(x)` (None: FREE_STEPS)."""

    def cost(self, states: States, label: torch.Tensor) -> torch.Tensor:
        """Per-example cost C(h_L, y), shape [B]."""

    def cost_grad(self, output: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """dC/dh_L at the given output state, shape [B, NUM_CLASSES]."""

    # a generative model has, instead of cost and cost_grad:
    #   predictions(x, states) -> {target: prediction}, every `~` term's prediction (the
    #   input's is its reconstruction)

    def energies(self, x: torch.Tensor, states: States) -> dict[str, torch.Tensor]:
        """Per-term energy, each shape [B] (one entry per `~` term or `energy` statement)."""

    def energy(self, x: torch.Tensor, states: States) -> torch.Tensor:
        """Total energy E, shape [B]."""

    def state_grads(self, x: torch.Tensor, states: States, label: torch.Tensor | None = None,
                    beta: float = 0.0) -> States:
        """dF/dh of F = E + beta*C at `states` for every state, from the derived expressions."""

    def relax(self, x: torch.Tensor, states: States, label: torch.Tensor | None, beta: float,
              steps: int, mod: bool = True, synchronous: bool = False) -> States:
        """`steps` iterations of the update rules of F = E + beta*C, starting from `states`:
        closed-form (alpha = 1, mod-PGD when `mod`) or gradient steps per UPDATE_RULES,
        asynchronous by UPDATE_GROUPS unless `synchronous`."""

    def param_grads(self, x: torch.Tensor, states: States) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(mean energy, dE/dtheta of the batch-mean energy) at fixed states, the gradients in
        `self.parameters()` order."""


# Members of relaxation models only (FEEDFORWARD False):
#   initial_states(x) -> States     where a relaxation from rest starts
#
# The fast path (every generated module has it; the runtime uses it when present and otherwise
# drives relax + param_grads):
#   free_phase(x, steps=None) -> (States, carry)
#       the free phase and the values computed on the way that a nudged phase reuses (opaque)
#   nudged_phase(x, free, carry, label, beta, steps, mod=True) -> (States, factors)
#       the asynchronous relaxation from the free state (the same states as relax), then the
#       factors of dE/dtheta there; factors["energy"] is the per-example energy, shape [B]
#   factors(x, states) -> factors
#       the same factors at any states
#   param_grads_from(x, [(scale, factors), ...]) -> list[Tensor]
#       sum of scale * dE/dtheta (energy summed over the batch), parameters() order: one local
#       product per parameter and phase, one in all where the input is the same in every phase

#
# What the inference variants read (every generated module has them; a hand-written module
# without them can still be trained by EP, backprop and plain pcil):
#   STATE_BOUNDS: dict[str, tuple[float | None, float | None]]
#       each state's domain (None: unbounded); the projection of precision-weighted sweeps and
#       of the clamped output
#   TERM_PARAMETERS: dict[str, tuple[str, ...]]
#       the parameters (named_parameters names) of each energy term; a `~` term is named after
#       the state it predicts (the forward update)
#   LAYERS: dict[str, int]        (feedforward models only)
#       each state's layer, 1 + the deepest state its prediction reads (precision schedules)
