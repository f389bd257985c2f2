# ---------------------------------------------------------------------------------------------
# Rendering with matplotlib, headless (the Agg backend, chosen before pyplot is imported): each
# function takes the data of curves.py or trace.py and returns PNG bytes, so that writing the
# file (atomically, with the CLI's error handling) stays the caller's.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import io
import math

from pcdsl.visual.curves import RunCurves


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def training_figure(runs: list[RunCurves]) -> bytes:
    """Loss (train solid, test dashed), accuracy (top-1 train solid and test dashed, top-5 test
    dotted; left out when no run has one) and learning rate per epoch, one colour per run."""
    plt = _pyplot()
    accuracy = any(v is not None for run in runs for v in run.series["test_acc"])
    panels = 3 if accuracy else 2
    figure, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    loss_axis, lr_axis = axes[0], axes[-1]
    for index, run in enumerate(runs):
        colour = colours[index % len(colours)]
        # one legend entry per run (its colour); the line styles are in the panel titles
        _line(loss_axis, run, "train_loss", colour, "-", run.label)
        _line(loss_axis, run, "test_loss", colour, "--", None)
        if accuracy:
            _line(axes[1], run, "train_acc", colour, "-", None, scale=100.0)
            _line(axes[1], run, "test_acc", colour, "--", None, scale=100.0)
            _line(axes[1], run, "test_top5", colour, ":", None, scale=100.0)
        _line(lr_axis, run, "lr", colour, "-", None)
    generative = all(run.generative for run in runs)
    loss_axis.set_ylabel("reconstruction error (MSE)" if generative else
                         "loss (reconstruction error for generative runs)" if any(r.generative for r in runs)
                         else "loss (mean cost)")
    if _positive(runs, ("train_loss", "test_loss")):
        loss_axis.set_yscale("log")
    if accuracy:
        axes[1].set_ylabel("accuracy (%)")
    lr_axis.set_ylabel("learning rate")
    titles = ["loss (solid: train, dashed: test)"] + (
        ["accuracy (solid: train, dashed: test, dotted: test top-5)"] if accuracy else []) + ["learning rate"]
    for axis, title in zip(axes, titles):
        axis.set_xlabel("epoch")
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    figure.legend(*loss_axis.get_legend_handles_labels(), loc="lower center", ncol=min(len(runs), 3), fontsize=8,
                  bbox_to_anchor=(0.5, -0.02 - 0.05 * math.ceil(len(runs) / 3)))
    figure.tight_layout()
    return _png(figure)


def _line(axis, run: RunCurves, name: str, colour, style: str, label: str | None, scale: float = 1.0) -> None:
    points = [(e, v * scale) for e, v in zip(run.epochs, run.series[name]) if v is not None]
    if points:
        epochs, values = zip(*points)
        axis.plot(epochs, values, style, color=colour, marker="o", markersize=3, label=label)


def _positive(runs: list[RunCurves], names) -> bool:
    values = [v for run in runs for name in names for v in run.series[name] if v is not None]
    return bool(values) and all(v > 0 and math.isfinite(v) for v in values)


def trace_figure(phases, title: str) -> bytes:
    """One column per phase: each energy term and the total E (black), the cost C and the
    objective F = E + beta * C, and each state's RMS change per iteration (log scales where the
    values are positive)."""
    plt = _pyplot()
    from matplotlib import ticker
    # a phase of one point (a PCN's feedforward free phase) needs a narrow column only; the
    # constrained layout keeps the twin axis' label of one column off the next column
    widths = [0.5 if len(phase.iterations) == 1 else 1.0 for phase in phases]
    figure, axes = plt.subplots(3, len(phases), figsize=(4.9 * sum(widths) + 0.6, 9.0), squeeze=False,
                                width_ratios=widths, layout="constrained")
    for column, phase in enumerate(phases):
        top, middle, bottom = axes[0][column], axes[1][column], axes[2][column]
        for term, values in phase.energies.items():
            top.plot(phase.iterations, values, marker=".", label=f"E[{term}]")
        top.plot(phase.iterations, phase.total, color="black", linewidth=2, label="E (total)")
        _log_if_positive(top, [v for values in phase.energies.values() for v in values] + phase.total)
        single = len(phase.iterations) == 1
        top.set_title(f"{phase.name}" + (f" (beta {phase.beta:g})" if phase.beta else "")
                      + (" (the feedforward pass)" if single else ""), fontsize=10)
        top.set_ylabel("energy (batch mean)")
        if any(c is not None for c in phase.cost):
            middle.plot(phase.iterations, phase.cost, marker=".", label="C (cost)")
            middle.set_ylabel("cost (batch mean)")
            if phase.beta:         # F on its own axis: beta C dwarfs E's changes
                twin = middle.twinx()
                twin.plot(phase.iterations, phase.objective, color="black", linestyle="--", label="F = E + beta C")
                twin.set_ylabel("F = E + beta C (dashed)")
        else:
            middle.plot(phase.iterations, phase.total, color="black", marker=".", label="E (no cost: generative)")
            middle.set_ylabel("energy")
        for state, values in phase.changes.items():
            # a state that has not moved (exactly 0, e.g. before the error reaches it) is a gap
            points = [(t, v if v else math.nan) for t, v in zip(phase.iterations, values) if v is not None]
            if points:
                bottom.plot(*zip(*points), marker=".", label=state)
        # a state that has stopped moving changes by exactly 0: masked on the log scale
        _log_if_positive(bottom, [v for values in phase.changes.values() for v in values if v], zeros_allowed=True)
        bottom.set_ylabel("state change (RMS per iteration)")
        bottom.set_xlabel("iteration")
        for axis in (top, middle, bottom):
            axis.grid(alpha=0.3)
            if single:
                axis.set_xticks(phase.iterations)
            else:
                axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # iterations are whole
            if not single:
                axis.legend(fontsize=7, loc="best", ncol=2 if len(axis.get_lines()) > 6 else 1)
    figure.suptitle(title, fontsize=11)
    return _png(figure)


def _log_if_positive(axis, values, zeros_allowed: bool = False) -> None:
    finite = [v for v in values if v is not None and math.isfinite(v) and not (zeros_allowed and v == 0)]
    if finite and all(v > 0 for v in finite) and max(finite) / min(finite) > 20:
        axis.set_yscale("log")
