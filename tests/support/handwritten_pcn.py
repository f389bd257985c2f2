# ---------------------------------------------------------------------------------------------
# A hand-written predictive-coding MLP that follows pcdsl/runtime/protocol.py to the letter.
#
# It is the reference a compiled module must match (the code generator is checked against it)
# and the model the runtime tests train. Everything is spelled out: the energy, its state
# gradients, the closed-form alpha = 1 updates of METHOD.md section 3 with explicit transposed
# matmuls (no autograd inside the relaxation loop), and its own EP estimator, an independent
# implementation that the runtime's (pcdsl/runtime/estimators.py) is checked against. Like a
# generated module it imports only torch.
#
#   states   h1 .. hL   (h0 = x is clamped)
#   predict  f_k(h_{k-1}) = relu(W_k h_{k-1} + b_k) for hidden layers, W_L h_{L-1} + b_L for hL
#   energy   E = 1/2 sum_k ||h_k - f_k(h_{k-1})||^2          (one term per state, per example)
#   cost     squared_error: 1/2 ||h_L - onehot(y)||^2   |   cross_entropy: -log softmax(h_L)[y]
#
# Parameters are registered W1, b1, W2, b2, ... so `parameters()` order is that order.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

# A nudged relaxation has run away when it ends with an energy above
#     ENERGY_GROWTH_LIMIT * |beta| * (mean free cost + 1):
# from E = 0 at the free state, E grows to about beta^2 |dC/dh_L|^2 / 2 near the nudged
# equilibrium, i.e. |beta| times the cost or less; an iteration whose top-down Jacobians are not
# contractive grows it geometrically instead. The factor is generous (a false alarm stops a
# training run) and the "+ 1" keeps the bound away from zero when the cost is. Same rule as the
# code generator's.
ENERGY_GROWTH_LIMIT = 1e3


def _pc_text(name: str, sizes: tuple[int, ...], cost: str) -> str:
    """The same network in pcdsl's language (for the protocol's SOURCE / SOURCE_SHA256)."""
    layers = len(sizes) - 1
    lines = [f"model {name} {{", f"  input  x : [{sizes[0]}]", f"  label  y : [{sizes[-1]}]"]
    below = "x"
    for k in range(1, layers + 1):
        if k < layers:
            lines.append(f"  state  h{k} : [{sizes[k]}] >= 0 ~ relu(dense({below}, {sizes[k]}) + bias)")
        else:
            lines.append(f"  output h{k} : [{sizes[k]}] ~ dense({below}, {sizes[k]}) + bias")
        below = f"h{k}"
    lines += [f"  cost {cost}(h{layers}, y)", "}"]
    return "\n".join(lines) + "\n"


class Model(torch.nn.Module):
    NAME = "handwritten_pcn"
    FEEDFORWARD = True   # E = 0 at the feedforward pass, so the free phase is one forward pass

    def __init__(self, sizes: tuple[int, ...] = (64, 32, 32, 10), cost: str = "cross_entropy",
                 gain: float = 1.0, gains: dict[str, float] | None = None):
        super().__init__()
        if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
            raise ValueError(f"sizes must be (input, ..., classes) with every size >= 1, got {sizes}")
        if cost not in ("squared_error", "cross_entropy"):
            raise ValueError(f"cost must be 'squared_error' or 'cross_entropy', got {cost!r}")
        self.sizes = tuple(int(n) for n in sizes)
        self.layers = len(self.sizes) - 1
        self.COST = cost
        self.INPUT = "x"
        self.INPUT_SHAPE = (self.sizes[0],)
        self.STATES = tuple(f"h{k}" for k in range(1, self.layers + 1))
        self.OUTPUT = self.STATES[-1]
        self.NUM_CLASSES = self.sizes[-1]
        # Layers of one parity never share an energy term, so each group is updated exactly and
        # in parallel; the even-indexed layers go first (METHOD.md section 3).
        evens = tuple(f"h{k}" for k in range(2, self.layers + 1, 2))
        odds = tuple(f"h{k}" for k in range(1, self.layers + 1, 2))
        self.UPDATE_GROUPS = tuple(group for group in (evens, odds) if group)
        self.STATE_SHAPES = {name: (self.sizes[k],) for k, name in enumerate(self.STATES, start=1)}
        self.UPDATE_RULES = {name: "closed" for name in self.STATES}
        self.FREE_STEPS = 1
        self.RELAX_STEP, self.RELAX_MOMENTUM = 0.1, 0.0
        self.SOURCE = _pc_text(self.NAME, self.sizes, cost)
        self.SOURCE_SHA256 = hashlib.sha256(self.SOURCE.encode()).hexdigest()
        self.gain = float(gain)
        self.gains = dict(gains or {})
        for k in range(1, self.layers + 1):
            fan_out, fan_in = self.sizes[k], self.sizes[k - 1]
            self.register_parameter(f"W{k}", torch.nn.Parameter(torch.empty(fan_out, fan_in)))
            self.register_parameter(f"b{k}", torch.nn.Parameter(torch.empty(fan_out)))
        self.reset_parameters()

    # ---- parameters ---------------------------------------------------------------------------

    def weight(self, k: int) -> torch.Tensor:
        return getattr(self, f"W{k}")

    def bias(self, k: int) -> torch.Tensor:
        return getattr(self, f"b{k}")

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """U(-c, c) with c = gain * sqrt(1 / fan_in), for weights and biases alike."""
        for k in range(1, self.layers + 1):
            gain = self.gains.get(f"h{k}", self.gain)
            bound = gain * math.sqrt(1.0 / self.sizes[k - 1])
            for tensor in (self.weight(k), self.bias(k)):
                tensor.uniform_(-bound, bound, generator=generator)

    # ---- the network's pieces -----------------------------------------------------------------

    def preactivation(self, k: int, below: torch.Tensor) -> torch.Tensor:
        """a_k = W_k h_{k-1} + b_k (batched: below @ W_k^T + b_k)."""
        return F.linear(below, self.weight(k), self.bias(k))

    def predict(self, k: int, below: torch.Tensor) -> torch.Tensor:
        """f_k(h_{k-1}): relu of the pre-activation for hidden layers, linear for the output."""
        a = self.preactivation(k, below)
        return a if k == self.layers else torch.relu(a)

    def _stack(self, x: torch.Tensor, states: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """[h0 = x (flattened), h1, ..., hL]."""
        return [x.reshape(x.shape[0], -1)] + [states[name] for name in self.STATES]

    def _onehot(self, label: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.one_hot(label, self.NUM_CLASSES).to(like.dtype)

    def cost_grad(self, output: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """dC/dh_L per example: h_L - onehot(y) or softmax(h_L) - onehot(y)."""
        prediction = output if self.COST == "squared_error" else torch.softmax(output, dim=1)
        return prediction - self._onehot(label, output)

    # ---- protocol: free phase, cost, energy ---------------------------------------------------

    def forward(self, x: torch.Tensor, steps: int | None = None) -> dict[str, torch.Tensor]:
        """The feedforward pass, which is the free equilibrium (`steps` is not needed)."""
        h = x.reshape(x.shape[0], -1)
        states = {}
        for k, name in enumerate(self.STATES, start=1):
            h = self.predict(k, h)
            states[name] = h
        return states

    def cost(self, states: dict[str, torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        output = states[self.OUTPUT]
        if self.COST == "squared_error":
            return 0.5 * (output - self._onehot(label, output)).pow(2).sum(dim=1)
        return F.cross_entropy(output, label, reduction="none")

    def energies(self, x: torch.Tensor, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self._stack(x, states)
        return {name: 0.5 * (h[k] - self.predict(k, h[k - 1])).pow(2).sum(dim=1)
                for k, name in enumerate(self.STATES, start=1)}

    def energy(self, x: torch.Tensor, states: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(self.energies(x, states).values())).sum(dim=0)

    def state_grads(self, x: torch.Tensor, states: dict[str, torch.Tensor], label: torch.Tensor | None = None,
                    beta: float = 0.0) -> dict[str, torch.Tensor]:
        """dF/dh_k = eps_k - Delta_k (+ beta * dC/dh_L for the output)."""
        h = self._stack(x, states)
        grads = {}
        for k, name in enumerate(self.STATES, start=1):
            grad = h[k] - self.predict(k, h[k - 1])
            if k < self.layers:
                grad = grad - self.top_down(k, h)
            elif beta:
                grad = grad + beta * self.cost_grad(h[k], label)
            grads[name] = grad
        return grads

    # ---- protocol: relaxation -----------------------------------------------------------------

    def top_down(self, k: int, h: list[torch.Tensor]) -> torch.Tensor:
        """Delta_k = J_{f_{k+1}}(h_k)^T eps_{k+1}: the error of the layer above, sent back through
        the derivative of its activation and the transposed weight matrix."""
        a_above = self.preactivation(k + 1, h[k])
        if k + 1 == self.layers:
            error = h[k + 1] - a_above
        else:
            error = (h[k + 1] - torch.relu(a_above)) * (a_above > 0).to(a_above.dtype)
        return error @ self.weight(k + 1)

    def updated(self, k: int, h: list[torch.Tensor], label: torch.Tensor | None, beta: float,
                mod: bool) -> torch.Tensor:
        """The alpha = 1 projected step of F = E + beta*C in h_k, which is free of h_k itself."""
        a = self.preactivation(k, h[k - 1])
        if k == self.layers:
            # linear output: h_L - dF/dh_L = a_L - beta * dC/dh_L, evaluated at the current h_L
            return a if beta == 0 else a - beta * self.cost_grad(h[k], label)
        drive = self.top_down(k, h)
        # mod-PGD keeps the raw pre-activation (a negative bottom-up drive holds a unit off
        # unless the top-down signal outweighs it); PGD uses the prediction relu(a_k).
        return torch.relu(a + drive) if mod else torch.relu(torch.relu(a) + drive)

    @torch.no_grad()
    def relax(self, x: torch.Tensor, states: dict[str, torch.Tensor], label: torch.Tensor | None,
              beta: float, steps: int, mod: bool = True,
              synchronous: bool = False) -> dict[str, torch.Tensor]:
        if beta != 0 and label is None:
            raise ValueError("a nudged relaxation (beta != 0) needs the labels")
        h = self._stack(x, states)
        index = {name: k for k, name in enumerate(self.STATES, start=1)}
        groups = (self.STATES,) if synchronous else self.UPDATE_GROUPS
        for _ in range(steps):
            for group in groups:
                # every update of a group reads the states as they were before the group started
                new = {index[name]: self.updated(index[name], h, label, beta, mod) for name in group}
                for k, value in new.items():
                    # synchronous: each state half way (undamped simultaneous updates overshoot)
                    h[k] = 0.5 * (h[k] + value) if synchronous else value
        return {name: h[k] for name, k in index.items()}

    # ---- protocol: gradients ------------------------------------------------------------------

    def param_grads(self, x: torch.Tensor, states: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        params = list(self.parameters())
        with torch.enable_grad():
            fixed = {name: value.detach() for name, value in states.items()}
            mean_energy = self.energy(x, fixed).mean()
            grads = torch.autograd.grad(mean_energy, params, allow_unused=True)
        return mean_energy.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def _checked(self, x: torch.Tensor, states: dict[str, torch.Tensor], beta: float,
                 free_cost: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raise FloatingPointError if a nudged relaxation blew up or is running away."""
        for name, value in states.items():
            if not torch.isfinite(value).all():
                raise FloatingPointError(f"the relaxation at beta={beta:+g} produced non-finite "
                                         f"values in state {name}")
        with torch.no_grad():
            energy = self.energy(x, states).mean()
        if not torch.isfinite(energy):
            raise FloatingPointError(f"the energy after the relaxation at beta={beta:+g} is "
                                     f"{energy.item()}")
        limit = ENERGY_GROWTH_LIMIT * abs(beta) * (float(free_cost) + 1.0)
        if float(energy) > limit:
            raise FloatingPointError(f"the relaxation at beta={beta:+g} diverged: energy "
                                     f"{float(energy):.3g} exceeds {ENERGY_GROWTH_LIMIT:g} * |beta| "
                                     f"* (cost + 1) = {limit:.3g}")
        return states

    def ep_gradients(self, x: torch.Tensor, label: torch.Tensor, beta: float, steps: int,
                     scheme: str = "centered", mod: bool = True, synchronous: bool = False,
                     free_steps: int | None = None,
                     generator: torch.Generator | None = None) -> dict:
        """EP estimate of d(mean cost)/d(theta). `beta` > 0 is the magnitude; `scheme` sets signs.

        random: ONE sign per call (per batch): randint(0, 2) from `generator`, by default torch's
        global generator (so a run seeded with torch.manual_seed and resumed with the saved RNG
        state draws the same signs); 0 means +beta, 1 means -beta.
        The free state of a PCN has E = 0, so dF/dtheta vanishes there and the one-sided schemes
        need only their nudged phase: grad = dE/dtheta(h^beta) / beta. `free_steps` is unused
        (the free phase is the forward pass)."""
        if beta <= 0:
            raise ValueError(f"beta is the nudging magnitude and must be > 0, got {beta}")
        with torch.no_grad():
            free = self.forward(x)
            free_cost = self.cost(free, label).mean()
        if not torch.isfinite(free_cost):
            raise FloatingPointError(f"the free-phase cost is {free_cost.item()}")

        def nudged(signed_beta: float) -> list[torch.Tensor]:
            state = self.relax(x, free, label, signed_beta, steps, mod=mod, synchronous=synchronous)
            return self.param_grads(x, self._checked(x, state, signed_beta, free_cost))[1]

        if scheme == "centered":
            plus, minus = nudged(beta), nudged(-beta)
            grads = [(p - m) / (2 * beta) for p, m in zip(plus, minus)]
        elif scheme in ("forward", "backward", "random"):
            if scheme == "random":
                flip = int(torch.randint(0, 2, (1,), generator=generator))
                sign = 1.0 if flip == 0 else -1.0
            else:
                sign = 1.0 if scheme == "forward" else -1.0
            grads = [g / (sign * beta) for g in nudged(sign * beta)]
        else:
            raise ValueError(f"unknown EP scheme {scheme!r}; expected centered, forward, "
                             "backward or random")
        return {"grads": grads, "loss": free_cost, "free": free}
