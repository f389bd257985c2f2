# ---------------------------------------------------------------------------------------------
# `pcdsl bench`: the training step of one network timed the fair way.
#
# In one process, same batch, after warm-up, round by round with the order rotated each round
# (a busy machine then slows every variant alike), medians reported:
#
#   ep            pcdsl's EP step (the compiled program when compiling)
#   ep_eager      the same step without torch.compile (when compiling)
#   ep_reference  the straightforward eager EP step (pcdsl/runtime/reference.py: autograd on the
#                 energy for every half-sweep and for dE/dtheta), the code researchers write
#   bp            the backprop step on the same network (compiled when EP is)
#   bp_eager      the same without torch.compile (when compiling)
#
# Every variant runs under the same layout (channels_last) and precision, so the ratios compare
# algorithms, not settings; EP/BP takes each algorithm at its best (compiled or eager, whichever
# is faster on this machine). FLOPs come from the compiler's count (pcdsl/plan/cost.py); achieved
# TFLOP/s is that count over the median time. The first call of each variant (compilation
# included) is reported apart.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.reference import reference_ep_gradients, state_steps
from pcdsl.runtime.step import StepOptions, TrainStep

IMAGENET_TRAIN_IMAGES = 1_281_167
# dense bfloat16 / float32 (non-tensor-core) peaks in TFLOP/s, from the vendors' data sheets
GPU_PEAKS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5), "L40S": (362.0, 91.6),
             "L4": (121.0, 30.3), "A10": (125.0, 31.2)}


@dataclass
class Variant:
    name: str
    algorithm: str                 # "ep" or "bp": which FLOP count applies
    run: Callable[[], None]


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _timed(run: Callable[[], None], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def device_peak(device: torch.device, precision: str) -> Optional[float]:
    """The device's dense peak in TFLOP/s for the precision's products, where known."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, fp32) in GPU_PEAKS.items():
        if key in name:
            return bf16 if precision == "bf16" else fp32
    return None


def make_variants(model, compiled, config: TrainConfig, x: torch.Tensor, label: torch.Tensor,
                  options: StepOptions, reference: bool = True) -> list[Variant]:
    """The step variants to time; `compiled` is the pipeline's Compiled (for the reference's
    per-state steps)."""
    ep_config = config.model_copy(update={"algorithm": "ep"})
    bp_config = config.model_copy(update={"algorithm": "bp"})
    eager = StepOptions(compile=False, channels_last=options.channels_last)
    variants = [Variant("ep", "ep", _stepper(TrainStep(model, ep_config, options), x, label)),
                Variant("bp", "bp", _stepper(TrainStep(model, bp_config, options), x, label))]
    if options.compile:
        variants += [Variant("ep_eager", "ep", _stepper(TrainStep(model, ep_config, eager), x, label)),
                     Variant("bp_eager", "bp", _stepper(TrainStep(model, bp_config, eager), x, label))]
    if reference:
        steps = state_steps(compiled.checked)

        def run_reference():
            from pcdsl.runtime.estimators import precision_context
            with precision_context(x, config.precision):
                reference_ep_gradients(model, x, label, config.beta, config.steps, steps, config.free_steps,
                                       config.scheme)
        variants.append(Variant("ep_reference", "ep", run_reference))
    return variants


def _stepper(step: TrainStep, x, label) -> Callable[[], None]:
    def run():
        step(x, label)
    return run


def bench_variants(variants: list[Variant], device: torch.device, *, rounds: int = 5, warmup: int = 2) -> dict:
    """{name: {"first_s", "median_s", "min_s", "times_s", "peak_memory_bytes"}}: warm-up (the
    first call, compilation included, kept apart), then `rounds` rounds, each timing every
    variant once, starting one later each round."""
    sync = _sync(device)
    results = {}
    for variant in variants:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        first = _timed(variant.run, sync)
        for _ in range(max(0, warmup - 1)):
            variant.run()
        sync()
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        results[variant.name] = {"first_s": first, "times_s": [], "peak_memory_bytes": peak}
    for round_index in range(rounds):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            results[variant.name]["times_s"].append(_timed(variant.run, sync))
    for entry in results.values():
        entry["median_s"] = statistics.median(entry["times_s"])
        entry["min_s"] = min(entry["times_s"])
    return results


def summarise(results: dict, variants: list[Variant], flops, batch: int, device: torch.device,
              precision: str, num_classes: int, cost_model: Optional[float]) -> dict:
    """Per-variant throughput and TFLOP/s, the ratios, the ImageNet projection."""
    peak = device_peak(device, precision)
    per_example = {"ep": flops.ep, "bp": flops.backprop}
    for variant in variants:
        entry = results[variant.name]
        seconds = entry["median_s"]
        entry["ms_per_step"] = seconds * 1e3
        entry["images_per_s"] = batch / seconds
        entry["tflops"] = per_example[variant.algorithm] * batch / seconds / 1e12
        entry["peak_fraction"] = entry["tflops"] / peak if peak else None
    # each algorithm at its own best settings (compiled or eager, whichever is faster here)
    best = {algorithm: min((v for v in variants if v.algorithm == algorithm and v.name != "ep_reference"),
                           key=lambda v: results[v.name]["median_s"]).name for algorithm in ("ep", "bp")}
    ratios = {"ep_over_bp": results[best["ep"]]["median_s"] / results[best["bp"]]["median_s"],
              "best": best, "flop_ratio": flops.ratio, "cost_model": cost_model}
    ratios["ep_over_bp_vs_flops"] = ratios["ep_over_bp"] / flops.ratio
    if "ep_reference" in results:
        ratios["reference_over_ep"] = results["ep_reference"]["median_s"] / results["ep"]["median_s"]
    if "ep_eager" in results:
        ratios["eager_over_compiled_ep"] = results["ep_eager"]["median_s"] / results["ep"]["median_s"]
        ratios["eager_over_compiled_bp"] = results["bp_eager"]["median_s"] / results["bp"]["median_s"]
    summary = {"variants": results, "ratios": ratios,
               "flops_per_example": {"ep": flops.ep, "bp": flops.backprop, "ep_free": flops.free,
                                     "ep_nudged": flops.nudged, "ep_products": flops.products},
               "device_peak_tflops": peak}
    if num_classes == 1000:
        # each algorithm at its best, as in EP/BP
        summary["imagenet_50_epochs_days"] = {
            algorithm: 50 * IMAGENET_TRAIN_IMAGES / results[best[algorithm]]["images_per_s"] / 86400
            for algorithm in ("ep", "bp")}
    return summary
