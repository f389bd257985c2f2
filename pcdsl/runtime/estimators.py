# ---------------------------------------------------------------------------------------------
# The learning algorithms' gradient estimates, composed from a compiled module's primitives.
#
# A generated module knows its model: the free phase, the relaxation, the energies and the
# parameter gradients of the energy at fixed states (protocol.py). How those make a gradient is
# the algorithm's business, and it lives here, once, for every model:
#
#   ep_gradients   equilibrium propagation: centered (two nudged phases, +beta and -beta,
#                  error O(beta^2)), forward / backward (one phase against the free state),
#                  random (forward or backward, the sign drawn per call)
#   bp_gradients   backprop through the free phase: the exact gradient of the same network (for
#                  a model whose free phase is a relaxation, through its iterations)
#
# A relaxation that produces non-finite states or an energy that grows without bound raises
# FloatingPointError instead of being turned into a gradient (METHOD.md section 3).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import torch

SCHEMES = ("centered", "forward", "backward", "random")


def _phase_signs(scheme: str, beta: float, generator) -> tuple[float, float]:
    if not beta > 0:
        raise ValueError(f"beta is the nudging magnitude and must be > 0, got {beta} (the scheme sets the signs)")
    if scheme == "random":
        scheme = ("forward", "backward")[int(torch.randint(0, 2, (1,), generator=generator))]
    if scheme not in SCHEMES:
        raise ValueError(f"unknown EP scheme {scheme!r}: {', '.join(SCHEMES)}")
    upper = beta if scheme in ("centered", "forward") else 0.0
    lower = -beta if scheme in ("centered", "backward") else 0.0
    return upper, lower


def nudged_param_grads(model, x, free, label, beta: float, steps: int, *, mod: bool = True,
                       synchronous: bool = False, free_loss: float = 0.0) -> list[torch.Tensor]:
    """dE/dtheta at the equilibrium reached from the free state at `beta` (beta = 0: the free
    state itself)."""
    if beta == 0.0 and model.FEEDFORWARD:
        # the feedforward state has zero prediction error, so dE/dtheta = 0 there
        return [torch.zeros_like(p) for p in model.parameters()]
    with torch.no_grad():
        states = free if beta == 0.0 else model.relax(x, free, label, beta, steps, mod, synchronous)
    for name, h in states.items():
        if not torch.isfinite(h).all():
            raise FloatingPointError(
                f"the relaxation at beta={beta:g} diverged: state {name} is not finite after {steps} steps")
    energy, grads = model.param_grads(x, states)
    if model.FEEDFORWARD:
        # E grows from 0 at the free state to about beta^2 |dC|^2 / 2; orders of magnitude past
        # |beta| * C means the fixed-point iteration is running away (METHOD.md section 3).
        bound = 1e3 * abs(beta) * (free_loss + 1.0)
        if not float(energy) <= bound:
            raise FloatingPointError(
                f"the relaxation at beta={beta:g} diverged: energy {float(energy):.3g} after {steps} steps "
                f"(bound {bound:.3g})")
    return grads


def ep_gradients(model, x: torch.Tensor, label: torch.Tensor, beta: float, steps: int, *,
                 scheme: str = "centered", mod: bool = True, synchronous: bool = False,
                 free_steps: int | None = None, generator: torch.Generator | None = None) -> dict:
    """Equilibrium propagation's estimate of d mean(C) / d theta at the free equilibrium.

    Returns {"grads": list (parameters() order), "loss": mean cost at the free state (0-dim),
    "free": the free states}."""
    with torch.no_grad():
        free = model(x, free_steps)
        loss = model.cost(free, label).mean()
    upper, lower = _phase_signs(scheme, beta, generator)
    options = dict(mod=mod, synchronous=synchronous, free_loss=float(loss))
    grads_upper = nudged_param_grads(model, x, free, label, upper, steps, **options)
    grads_lower = nudged_param_grads(model, x, free, label, lower, steps, **options)
    scale = 1.0 / (upper - lower)
    return {"grads": [(gu - gl) * scale for gu, gl in zip(grads_upper, grads_lower)], "loss": loss, "free": free}


def bp_gradients(model, x: torch.Tensor, label: torch.Tensor, *, free_steps: int | None = None) -> dict:
    """Autograd's gradient of the batch-mean cost through the free phase (same result keys)."""
    params = list(model.parameters())
    with torch.enable_grad():
        free = model(x, free_steps)
        loss = model.cost(free, label).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {"grads": [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)],
            "loss": loss.detach(), "free": {name: h.detach() for name, h in free.items()}}


class Estimators:
    """Mixed into the classes `pcdsl.load` returns: the estimators as methods, with the model
    file's train block (`train_config`) supplying defaults."""

    train_config = None

    def _default(self, key, value):
        if value is not None:
            return value
        if self.train_config is None:
            raise TypeError(f"give `{key}`: this model class carries no train block defaults")
        return getattr(self.train_config, key)

    def ep_gradients(self, x, label, beta=None, steps=None, *, scheme=None, mod=None, synchronous=None,
                     free_steps=None, generator=None) -> dict:
        """EP's gradient estimate (see pcdsl.runtime.estimators.ep_gradients); unset arguments
        come from the model file's train block."""
        config = self.train_config
        return ep_gradients(self, x, label, self._default("beta", beta), self._default("steps", steps),
                            scheme=scheme or (config.scheme if config else "centered"),
                            mod=(config.update == "modpgd" if config else True) if mod is None else mod,
                            synchronous=(config.traversal == "sync" if config else False)
                            if synchronous is None else synchronous,
                            free_steps=free_steps, generator=generator)

    def bp_gradients(self, x, label, *, free_steps=None) -> dict:
        """Backprop's gradient through the free phase (see pcdsl.runtime.estimators.bp_gradients)."""
        return bp_gradients(self, x, label, free_steps=free_steps)
