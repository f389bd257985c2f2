# ---------------------------------------------------------------------------------------------
# Training configuration: one flat, validated record.
#
# The `train { ... }` block of a model file is sugar over these keys (`ep(beta=0.05, steps=10)`
# sets `algorithm`, `beta` and `steps`), and `pcdsl train --set key=value` overrides the same
# keys. Keeping it flat means the resolved config written to a run directory is one readable
# JSON object and every knob has exactly one name.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # learning algorithm: equilibrium propagation, or an exact-gradient baseline on the same
    # network: backprop through the free phase (bp), or implicit differentiation at its
    # equilibrium (rbp, recurrent backpropagation; for relaxation models); or predictive-coding
    # inference learning (pcil: output clamped to the target, `steps` inference sweeps, local
    # weight updates; for models whose free phase is the feedforward pass)
    # (ipc: incremental PC, the weights updated at every inference sweep)
    algorithm: Literal["ep", "bp", "rbp", "pcil", "ipc"] = "ep"
    scheme: Literal["centered", "forward", "backward", "random"] = "centered"
    beta: float = Field(0.05, gt=0, description="nudging strength; the sign comes from `scheme`")
    steps: int = Field(10, ge=1, description="K: relaxation iterations per nudged phase")
    free_steps: int = Field(50, ge=1, description="free-phase iterations for models whose free "
                            "equilibrium is not a feedforward pass (Hopfield-type energies)")
    adjoint_steps: Optional[int] = Field(None, ge=1, description="rbp: fixed-point iterations of the "
                                         "adjoint (None: as many as free_steps)")
    update: Literal["modpgd", "pgd"] = "modpgd"
    traversal: Literal["async", "sync"] = "async"
    # EP's perturbation of the output: the cost's pull beta * dC/do (nudge), or the output held
    # at (1 - beta) * its update + beta * target (clamp; squared-error costs)
    perturbation: Literal["nudge", "clamp"] = "nudge"
    # pcil / ipc (Qi et al. 2025): per-layer, per-sweep precisions on the energy terms during the
    # inference sweeps (uniform: all 1), and the weight update from the relaxed states (relaxed)
    # or from each layer's relaxed state against its prediction from the feedforward pass (forward)
    inference_precision: Literal["uniform", "spiking", "decaying", "table"] = "uniform"
    precision_alpha: float = Field(1e-3, gt=0, le=1, description="spiking/decaying: the precision off the "
                                   "wavefront")
    precision_decay: float = Field(0.5, gt=0, lt=1, description="decaying: the factor per sweep after the "
                                   "wavefront")
    precision_table: Optional[list[list[float]]] = Field(None, description="table: one row per layer "
                                                         "(input side first), one column per sweep")
    weight_update: Literal["relaxed", "forward"] = "relaxed"
    # pcil on a generative model: the top state held at the one-hot label during inference
    # (generative classification: a test example's class is the one whose clamp explains it best)
    label_state: Optional[str] = Field(None, description="pcil, generative models: the top state "
                                       "clamped to the one-hot label")
    # pcil / ipc: the output held at its prediction minus the cost's gradient (None: the whole
    # gradient, PCX's clamp) or minus output_nudge times it, the update divided by output_nudge
    output_nudge: Optional[float] = Field(None, gt=0, description="pcil/ipc: nudge the output by this "
                                          "fraction of the cost's gradient instead of clamping it")
    # bf16: convolutions and matrix products in bfloat16 (autocast); states, prediction errors,
    # the nudged phases' difference and the optimiser stay float32
    precision: Literal["float32", "bf16"] = "float32"
    # states without a closed-form update (or all, with relax_rule=gradient) take projected
    # gradient steps h <- Proj(h - relax_step * v), v <- relax_momentum * v + dF/dh
    relax_rule: Literal["auto", "gradient"] = "auto"
    relax_step: float = Field(0.1, gt=0, description="step size of gradient relaxation")
    relax_momentum: float = Field(0.0, ge=0, lt=1, description="heavy-ball momentum of gradient relaxation")

    # optimiser and schedule
    optimizer: Literal["sgd"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr: float = Field(0.0, ge=0)

    batch: int = Field(64, ge=1)
    eval_batch: int = Field(256, ge=1)
    epochs: int = Field(10, ge=1)
    seed: int = 0
    keep_checkpoints: int = Field(0, ge=0, description="keep only the newest N epoch checkpoints "
                                  "(0: keep all; last.pt always stays)")
    # checkpoints inside an epoch (checkpoints/last.pt), after this many optimiser steps or
    # minutes since the last one (0: never by that measure); a resumed run continues from the
    # exact batch, with the same result as a run never stopped
    checkpoint_steps: int = Field(0, ge=0, description="a checkpoint every N steps inside an epoch (0: off)")
    checkpoint_minutes: float = Field(10.0, ge=0, description="a checkpoint every M minutes inside an "
                                      "epoch (0: off)")
    # a run failing with finite numbers (the loss 10x its best, or the accuracy back at chance)
    # for this many steps is reported (0: never checked); stop_on_divergence also stops it
    divergence_steps: int = Field(500, ge=0, description="steps a failing run is watched before it is reported")
    stop_on_divergence: bool = False

    # initialisation: U(-c, c), c = gain * sqrt(1 / fan); per-state gains override `init_gain`
    init_gain: float = Field(1.0, gt=0)
    init_fan: Literal["in", "out"] = "in"
    init_gains: dict[str, float] = Field(default_factory=dict)

    # input pipeline
    pad: int = Field(0, ge=0, description="zero-pad every input image by this many pixels (MNIST 28->32)")
    crop_pad: int = Field(0, ge=0, description="random crop with this much padding (0: off)")
    hflip: bool = False
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0")
        if (self.mean is None) != (self.std is None):
            raise ValueError("normalisation needs both `mean` and `std`")
        if self.mean is not None and len(self.mean) != len(self.std or []):
            raise ValueError("`mean` and `std` must have the same length")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError("every `std` entry must be > 0")
        if self.min_lr > self.lr:
            raise ValueError("min_lr must not exceed lr")
        if (self.inference_precision == "table") != (self.precision_table is not None):
            raise ValueError("a precision table goes with inference_precision table (precisions(table=...))")
        if self.precision_table is not None:
            if not self.precision_table or any(not row for row in self.precision_table):
                raise ValueError("precision_table needs one non-empty row per layer")
            if any(not (isinstance(v, (int, float)) and 0 < v <= 1e6) for row in self.precision_table for v in row):
                raise ValueError("every precision_table entry must be a number > 0")
        bad_gains = [name for name, gain in self.init_gains.items() if not gain > 0]
        if bad_gains:
            raise ValueError(f"init gains must be > 0 (got {', '.join(f'{n}={self.init_gains[n]}' for n in bad_gains)})")
        return self
