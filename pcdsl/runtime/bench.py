# ---------------------------------------------------------------------------------------------
# Side-by-side timing of one training step: the free phase, a centered-EP step and a backprop
# step of the same network, same batch, same process. Ratios measured in one run are what we
# report (METHOD.md section 6: a centered-EP step costs about 4K + 3 forward-pass units against
# backprop's 3); absolute times only together with the hardware.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import platform
import statistics
import time

import torch

from pcdsl.runtime.estimators import ep_gradients


def _timed(fn, repeats: int, sync) -> list[float]:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def bench_step(model, x, label, beta: float, steps: int, *, mod: bool = True, synchronous: bool = False,
               free_steps=None, repeats: int = 3, warmup: int = 1) -> dict:
    device = x.device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def free():
        with torch.no_grad():
            model(x, free_steps)

    def ep():
        out = ep_gradients(model, x, label, beta, steps, mod=mod, synchronous=synchronous, free_steps=free_steps)
        for p, g in zip(model.parameters(), out["grads"]):
            p.grad = g

    def bp():
        model.zero_grad(set_to_none=True)
        model.cost(model(x, free_steps), label).mean().backward()

    results = {}
    for name, fn in (("free_phase", free), ("ep_step", ep), ("bp_step", bp)):
        _timed(fn, warmup, sync)
        times = _timed(fn, repeats, sync)
        results[name] = {"median_s": statistics.median(times), "min_s": min(times)}
    feedforward = bool(getattr(model, "FEEDFORWARD", True))
    return {
        "batch": x.shape[0], "beta": beta, "steps": steps, "dtype": str(x.dtype).removeprefix("torch."),
        "device": _device_name(device), "threads": torch.get_num_threads(),
        "times": results,
        "ep_over_bp": results["ep_step"]["median_s"] / results["bp_step"]["median_s"],
        "cost_model_ep_over_bp": (4 * steps + 3) / 3 if feedforward else None,
    }


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
