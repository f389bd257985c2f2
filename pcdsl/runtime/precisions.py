# ---------------------------------------------------------------------------------------------
# Precision schedules for the inference sweeps of predictive-coding inference learning (Qi,
# Forasassi, Lukasiewicz & Salvatori 2025).
#
# In a deep PCN trained with the output clamped, the error starts at the top and moves down one
# layer per sweep; the layers it has not reached yet have no error, and by the time it reaches
# the bottom the top errors are orders of magnitude larger. Weighting each layer's energy term by
# a precision pi_k(t), E_t = sum_k pi_k(t) E_k, lets a schedule favour the layer the wavefront
# has just reached (k counts layers from the input, k = 1 .. L, the output's layer is L; t counts
# sweeps from 0):
#
#   uniform    pi = 1 everywhere: the plain energy
#   spiking    pi_k(t) = 1 at t = L - k, alpha otherwise
#   decaying   alpha before t = L - k, 1 there, then multiplied by `decay` each sweep (never
#              below alpha)
#   table      the user's rows, one per layer, one column per sweep; a row shorter than the
#              sweeps holds its last value
#
# The table is a plain list of lists (layers x sweeps) so that tests compare it with one written
# by hand; `sweep_precisions` turns it into what the sweeps read: per sweep, state -> precision.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from typing import Optional

SCHEDULES = ("uniform", "spiking", "decaying", "table")


def precision_schedule(kind: str, layers: int, sweeps: int, *, alpha: float = 1e-3, decay: float = 0.5,
                       table: Optional[list[list[float]]] = None) -> list[list[float]]:
    """pi[k - 1][t] for layers k = 1 .. `layers` (the output's layer last) and sweeps t."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown precision schedule {kind!r}: {', '.join(SCHEDULES)}")
    if kind == "table":
        if table is None or len(table) != layers:
            raise ValueError(f"a precision table needs one row per layer ({layers}), got "
                             f"{0 if table is None else len(table)}")
        return [[float(row[min(t, len(row) - 1)]) for t in range(sweeps)] for row in table]
    rows = []
    for k in range(1, layers + 1):
        front = layers - k                       # the sweep at which the error reaches layer k
        if kind == "uniform":
            rows.append([1.0] * sweeps)
        elif kind == "spiking":
            rows.append([1.0 if t == front else alpha for t in range(sweeps)])
        else:
            rows.append([alpha if t < front else max(alpha, decay ** (t - front)) for t in range(sweeps)])
    return rows


def sweep_precisions(model, config, sweeps: int) -> Optional[list[dict[str, float]]]:
    """The precisions each inference sweep reads (state -> pi, per sweep) for a run's config, or
    None for the uniform schedule (the plain energy: the model's own sweeps)."""
    if config.inference_precision == "uniform":
        return None
    layers = getattr(model, "LAYERS", None)
    if not layers:
        raise ValueError(f"precision schedules need a feedforward model with LAYERS; {model.NAME} has none")
    rows = precision_schedule(config.inference_precision, max(layers.values()), sweeps,
                              alpha=config.precision_alpha, decay=config.precision_decay,
                              table=config.precision_table)
    return [{state: rows[layer - 1][t] for state, layer in layers.items()} for t in range(sweeps)]
