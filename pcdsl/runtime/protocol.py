# ---------------------------------------------------------------------------------------------
# The contract between a generated model module and the runtime.
#
# `pcdsl compile` writes one Python file per model that defines `class Model(torch.nn.Module)`.
# The runtime (trainers, evaluation, gradcheck) drives any such class only through the members
# listed here, so a hand-written module that follows this protocol trains the same way.
#
# Conventions
#   x       input batch, shape [B, *INPUT_SHAPE], float
#   label   class indices, shape [B], int64 (the cost one-hot encodes them to NUM_CLASSES)
#   states  dict: free-state name -> tensor [B, *shape], in STATES order
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
    INPUT_SHAPE: tuple[int, ...]  # per-example input shape
    STATES: tuple[str, ...]       # free states, in declaration order
    OUTPUT: str                   # the state the cost reads (its values are the logits)
    NUM_CLASSES: int
    COST: str                     # "squared_error" | "cross_entropy"
    FEEDFORWARD: bool             # True when the free equilibrium is the feedforward pass
    UPDATE_GROUPS: tuple[tuple[str, ...], ...]  # colour groups, in traversal order

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter: U(-c, c), c = gain * sqrt(1 / fan)."""

    def forward(self, x: torch.Tensor, steps: int | None = None) -> States:
        """The free phase (beta = 0). A feedforward pass for PCNs; otherwise `steps` relaxation
        iterations from the zero state (None: the compiled default)."""

    def cost(self, states: States, label: torch.Tensor) -> torch.Tensor:
        """Per-example cost C(h_L, y), shape [B]."""

    def energies(self, x: torch.Tensor, states: States) -> dict[str, torch.Tensor]:
        """Per-term energy, each shape [B] (one entry per `~` term or `energy` statement)."""

    def energy(self, x: torch.Tensor, states: States) -> torch.Tensor:
        """Total energy E, shape [B]."""

    def relax(self, x: torch.Tensor, states: States, label: torch.Tensor | None, beta: float,
              steps: int, mod: bool = True, synchronous: bool = False) -> States:
        """`steps` iterations of the closed-form (alpha = 1) projected update of F = E + beta*C,
        starting from `states`; asynchronous by UPDATE_GROUPS unless `synchronous`."""

    def param_grads(self, x: torch.Tensor, states: States) -> list[torch.Tensor]:
        """dE/dtheta of the batch-mean energy at fixed states, in `self.parameters()` order."""

    def ep_gradients(self, x: torch.Tensor, label: torch.Tensor, beta: float, steps: int,
                     scheme: str = "centered", mod: bool = True, synchronous: bool = False,
                     free_steps: int | None = None) -> dict:
        """The EP estimate of the gradient of the batch-mean cost at the free equilibrium.

        Returns {"grads": list[Tensor] (parameters() order), "loss": mean cost at the free
        state (0-dim tensor), "free": States}. Raises FloatingPointError when a relaxation
        produces non-finite states or an energy that grows without bound."""
