# ---------------------------------------------------------------------------------------------
# One training step, by EP or by backprop, on any model that follows protocol.py.
#
# Both leave the gradient of the batch-MEAN cost in p.grad (EP: the model's estimate from its
# equilibria; BP: autograd through the free phase) and return the batch's free-phase outputs, so
# the trainer treats the two algorithms alike: step, optimiser.step(), bookkeeping.
#
# `TrainStep` is the step the way the run's options ask for it:
#   compile        torch.compile of the whole step: for EP the free phase, both nudged phases and
#                  the parameter gradients are one program (no autograd, no host synchronisation
#                  inside); for BP the forward pass and the cost (AOTAutograd compiles the
#                  backward). `cuda_graphs` adds CUDA graphs on a GPU (mode "reduce-overhead").
#                  Batches of another size than the first (an epoch's last) run eagerly rather
#                  than compiling a second program. Given the run's optimiser, the compiled EP
#                  step also takes the optimiser's step inside the same program (optim.sgd_step_,
#                  skipped on the device when the health flag is false): one program per step.
#   channels_last  the model's convolution weights and every input batch in NHWC, the layout
#                  in which CPU and GPU convolution and pooling kernels are fastest.
# Its health check (a finite loss and gradient, relaxations that did not run away) is a device
# flag: the caller reads it once per step, and only when it is false is the step re-run eagerly
# to say what went wrong.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass

import torch

from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.estimators import (Diverged, bp_gradients, ep_gradients, free_loss, ipc_updates, pcil_gradients,
                                      rbp_gradients)
from pcdsl.runtime.precisions import sweep_precisions
from pcdsl.runtime.optim import fusable, momentum_buffers, sgd_step_


@dataclass
class StepResult:
    loss: torch.Tensor      # 0-dim: mean cost at the free state, before the update
    logits: torch.Tensor    # [B, classes]: the free output state, detached
    ok: torch.Tensor        # 0-dim bool: the loss and gradient are finite, no relaxation ran away
    correct: torch.Tensor   # 0-dim: examples whose largest output is the label
    updated: bool = False   # the optimiser's step was taken too (only when `ok`: skipped otherwise)


@dataclass(frozen=True)
class StepOptions:
    compile: bool = False
    cuda_graphs: bool = False
    channels_last: bool = False
    lean_memory: bool = False      # EP: each nudged phase's products formed when it ends (its factors freed)


def has_convolutions(model) -> bool:
    return any(p.dim() == 4 for p in model.parameters())


def default_options(model, device: torch.device, compile: bool | None = None,
                    channels_last: bool | None = None, cuda_graphs: bool | None = None,
                    lean_memory: bool = False) -> StepOptions:
    """Unset options by device and model: compile and CUDA graphs on a GPU (on a CPU
    torch.compile takes 20 s to minutes per model and gains little where convolutions
    dominate), channels_last where the model has convolutions."""
    on_gpu = device.type == "cuda"
    return StepOptions(compile=on_gpu if compile is None else compile,
                       cuda_graphs=on_gpu if cuda_graphs is None else cuda_graphs,
                       channels_last=has_convolutions(model) if channels_last is None else channels_last,
                       lean_memory=lean_memory)


def all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One device-side flag for a list of tensors (a single fused reduction)."""
    return torch.isfinite(torch.stack([t.abs().sum() for t in tensors]).sum())


def ep_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig, scheme: str | None = None,
            check: bool = True, lean_memory: bool = False) -> tuple[list[torch.Tensor], StepResult]:
    """EP's gradient estimate and the step's result (p.grad untouched). `scheme` replaces the
    config's (a random scheme's draw, made by the caller)."""
    estimate = ep_gradients(model, x, label, config.beta, config.steps, scheme=scheme or config.scheme,
                            mod=config.update == "modpgd", synchronous=config.traversal == "sync",
                            free_steps=config.free_steps, check=check, precision=config.precision,
                            early_products=lean_memory, perturbation=config.perturbation)
    grads, loss = estimate["grads"], estimate["loss"]
    ok = estimate["health"].ok & torch.isfinite(loss) & all_finite(grads)
    return grads, _result(model, estimate, label, ok)


def bp_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig, loss_function=free_loss
            ) -> tuple[list[torch.Tensor], StepResult]:
    """Backprop's gradient through the free phase (a forward pass for a PCN; for other energies,
    through the `free_steps` relaxation iterations)."""
    estimate = bp_gradients(model, x, label, free_steps=config.free_steps, loss_function=loss_function,
                            precision=config.precision)
    grads, loss = estimate["grads"], estimate["loss"]
    ok = torch.isfinite(loss) & all_finite(grads)
    return grads, _result(model, estimate, label, ok)


def rbp_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig, check: bool = True
             ) -> tuple[list[torch.Tensor], StepResult]:
    """Implicit differentiation at the free equilibrium (recurrent backpropagation)."""
    estimate = rbp_gradients(model, x, label, free_steps=config.free_steps, adjoint_steps=config.adjoint_steps,
                             check=check)
    grads, loss = estimate["grads"], estimate["loss"]
    ok = estimate["health"].ok & torch.isfinite(loss) & all_finite(grads)
    return grads, _result(model, estimate, label, ok)


def pcil_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig) -> tuple[list[torch.Tensor], StepResult]:
    """Predictive-coding inference learning: `steps` sweeps with the output clamped (weighted by
    the config's precision schedule), then the relaxed or the forward weight update."""
    estimate = pcil_gradients(model, x, label, config.steps, mod=config.update == "modpgd",
                              precisions=sweep_precisions(model, config, config.steps),
                              forward_update=config.weight_update == "forward", free_steps=config.free_steps,
                              nudge=config.output_nudge, label_state=config.label_state)
    grads, loss = estimate["grads"], estimate["loss"]
    ok = estimate["health"].ok & torch.isfinite(loss) & all_finite(grads)
    return grads, _result(model, estimate, label, ok)


def ipc_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig, optimizer=None
             ) -> tuple[list[torch.Tensor], StepResult]:
    """Incremental PC: a step of `optimizer` at every one of the `steps` sweeps (result.updated).
    A sweep whose energy is not finite stops the weight steps of the batch there: the run is
    reported diverged with the weights of the last finite sweep."""
    if optimizer is None:
        raise ValueError("incremental PC takes the optimiser's steps inside its step: give the run's optimizer")
    healthy = torch.ones((), dtype=torch.bool, device=x.device)

    def update_weights(grads: list[torch.Tensor]) -> None:
        nonlocal healthy
        healthy = healthy & all_finite(grads)
        if bool(healthy):                  # one read per sweep: iPC is eager anyway
            _fill(model, grads)
            optimizer.step()

    estimate = ipc_updates(model, x, label, config.steps, update_weights, mod=config.update == "modpgd",
                           precisions=sweep_precisions(model, config, config.steps),
                           forward_update=config.weight_update == "forward", nudge=config.output_nudge)
    grads, loss = estimate["grads"], estimate["loss"]
    ok = estimate["health"].ok & healthy & torch.isfinite(loss)
    result = _result(model, estimate, label, ok)
    result.updated = True
    return grads, result


# each algorithm's eager step: (model, x, label, config) -> (grads, StepResult); iPC's also
# takes the optimiser, whose steps it takes itself
STEPS = {"ep": ep_step, "bp": bp_step, "rbp": rbp_step, "pcil": pcil_step, "ipc": ipc_step}


def _result(model, estimate: dict, label: torch.Tensor, ok: torch.Tensor) -> StepResult:
    if model.OUTPUT is None:      # a generative model: no class scores, nothing to count
        loss = estimate["loss"].detach()
        return StepResult(loss, loss.new_zeros((label.shape[0], 0)), ok,
                          torch.zeros((), dtype=torch.long, device=loss.device))
    logits = estimate["free"][model.OUTPUT].detach()
    return StepResult(estimate["loss"].detach(), logits, ok, (logits.argmax(dim=1) == label).sum())


def training_step(model, x: torch.Tensor, label: torch.Tensor, config: TrainConfig) -> StepResult:
    """Fill p.grad with the step's gradient (eager); raises Diverged if a relaxation ran away."""
    grads, result = STEPS[config.algorithm](model, x, label, config)
    _fill(model, grads)
    return result


def _fill(model, grads: list[torch.Tensor]) -> None:
    for parameter, grad in zip(model.parameters(), grads, strict=True):
        parameter.grad = grad.detach()


class TrainStep:
    """The training step of one run, with its options; `step(x, label)` fills p.grad and returns
    a StepResult whose `ok` the caller reads (then `diagnose` says what went wrong). With the
    run's `optimizer`, a compiled EP step also takes the optimiser's step (result.updated); the
    caller takes it otherwise. The step holds the optimiser's momentum buffers and learning-rate
    tensor as they are when it is made: load the optimiser's state before making it."""

    def __init__(self, model, config: TrainConfig, options: StepOptions = StepOptions(), optimizer=None,
                 batch: int | None = None):
        self.model, self.config, self.options = model, config, options
        # the batch size the compiled program is for: `batch` (the trainer passes the config's,
        # so that a run resumed at an epoch's short last batch does not compile for that one),
        # else the first batch seen
        self._batch = batch
        mode = "reduce-overhead" if options.cuda_graphs else None
        self._fused_update = False
        if config.algorithm == "ep":
            # EP has no autograd anywhere: the whole estimate is one graph
            self._eager = lambda x, label, scheme: ep_step(model, x, label, config, scheme, check=False,
                                                           lean_memory=options.lean_memory)
            self._compiled = None
            if options.compile and optimizer is not None and fusable(optimizer):
                self._fused_update = True
                buffers = momentum_buffers(optimizer)
                if options.cuda_graphs:
                    # state the graph updates in place (or reads, filled by the schedule): at
                    # fixed addresses a CUDA graph uses it where it is, neither copying it into
                    # its own inputs nor refusing a mutated input
                    rate = optimizer.param_groups[0]["lr"]
                    for tensor in (buffers or []) + ([rate] if isinstance(rate, torch.Tensor) else []):
                        torch._dynamo.mark_static_address(tensor)

                def step_and_update(x, label, scheme):
                    grads, result = self._eager(x, label, scheme)
                    sgd_step_(optimizer, grads, buffers, apply=result.ok)
                    return grads, result
                self._compiled = torch.compile(step_and_update, mode=mode)
            elif options.compile:
                self._compiled = torch.compile(self._eager, mode=mode)
        elif config.algorithm == "rbp":
            # implicit differentiation: a loop of vector-Jacobian products, run eagerly (with
            # --compile too: compiling autograd's loop gains nothing worth its compile time)
            self._eager = lambda x, label, scheme: rbp_step(model, x, label, config, check=False)
            self._compiled = None
        elif config.algorithm == "ipc":
            # the optimiser's steps inside the step, one per sweep: eager
            self._eager = lambda x, label, scheme: ipc_step(model, x, label, config, optimizer)
            self._compiled = None
        elif config.algorithm == "pcil":
            # no autograd: the sweeps and the local products compile as one graph, like EP's
            self._eager = lambda x, label, scheme: pcil_step(model, x, label, config)
            self._compiled = torch.compile(self._eager, mode=mode) if options.compile else None
        else:
            # backprop: the forward pass and the cost compiled, autograd runs their compiled backward
            self._eager = lambda x, label, scheme: bp_step(model, x, label, config)
            loss = torch.compile(free_loss, mode=mode) if options.compile else None
            self._compiled = (lambda x, label, scheme: bp_step(model, x, label, config, loss)) if loss else None

    def prepare(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch on the model's device, dtype and memory format."""
        reference = next(self.model.parameters())
        layout = torch.channels_last if self.options.channels_last and x.dim() == 4 else torch.contiguous_format
        return (x.to(device=reference.device, dtype=reference.dtype, memory_format=layout),
                label.to(reference.device))

    def _scheme(self) -> str:
        scheme = self.config.scheme
        if self.config.algorithm == "ep" and scheme == "random":
            # drawn here, not inside the compiled program: each sign then has a static graph
            scheme = ("forward", "backward")[int(torch.randint(0, 2, (1,)))]
        return scheme

    def __call__(self, x: torch.Tensor, label: torch.Tensor) -> StepResult:
        self.last_scheme = self._scheme()
        for parameter in self.model.parameters():
            parameter.grad = None     # the last step's gradient is not kept through this one
        if self._batch is None:
            self._batch = x.shape[0]
        compiled = self._compiled is not None and x.shape[0] == self._batch
        graphs = compiled and self.options.cuda_graphs and x.device.type == "cuda"
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        grads, result = (self._compiled if compiled else self._eager)(x, label, self.last_scheme)
        _fill(self.model, grads)
        if graphs:
            # a CUDA graph's outputs live in its memory pool until the next replay overwrites
            # them: what the caller keeps past this step (the loss, the hits) is copied out
            result = StepResult(result.loss.clone(), result.logits.clone(), result.ok.clone(), result.correct.clone())
        if compiled and self._fused_update:
            result.updated = True
        return result

    def idle(self) -> StepResult:
        """The step of a process whose shard of a batch is empty (an epoch's last batch smaller
        than the number of processes): a zero gradient, which the reduction weighs zero. It
        draws the step's random scheme all the same, so the processes' random streams stay one."""
        self.last_scheme = self._scheme()
        reference = next(self.model.parameters())
        for parameter in self.model.parameters():
            parameter.grad = torch.zeros_like(parameter)
        zero = torch.zeros((), device=reference.device, dtype=reference.dtype)
        return StepResult(zero, torch.zeros(0, self.model.NUM_CLASSES or 0, device=reference.device),
                          torch.ones((), dtype=torch.bool, device=reference.device),
                          torch.zeros((), dtype=torch.long, device=reference.device))

    def diagnose(self, x: torch.Tensor, label: torch.Tensor, result: StepResult) -> str:
        """Why a step's `ok` is false: the relaxation that ran away (the step re-run eagerly at
        the same weights), or the loss or gradient that is not finite."""
        if self.config.algorithm in ("ep", "rbp") and x.shape[0]:
            try:
                if self.config.algorithm == "ep":
                    ep_step(self.model, x, label, self.config, self.last_scheme, check=True,
                            lean_memory=self.options.lean_memory)
                else:
                    rbp_step(self.model, x, label, self.config, check=True)
            except Diverged as error:
                return str(error)
        loss = float(result.loss)
        if not torch.isfinite(result.loss):
            return f"the loss is {loss}"
        return "the gradient has non-finite entries"
