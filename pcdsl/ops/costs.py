# ---------------------------------------------------------------------------------------------
# Costs: C(h_L, y) on the output state, each with its gradient, defined once.
#
# The label arrives as class indices; both costs compare the output with its one-hot encoding.
# `torch_cost` / `torch_grad` give PyTorch expressions in the output's identifier, the label
# `label` and the number of classes.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .structure import TOTAL


@dataclass(frozen=True)
class Cost:
    name: str
    formula: str                                  # for people: docs, `pcdsl check`
    gradient: str
    torch_cost: Callable[[str, int], str]         # (output, classes) -> per-example cost [B]
    torch_grad: Callable[[str, int], str]         # (output, classes) -> dC/d output
    helpers: tuple[str, ...] = ()


def _one_hot(out: str, classes: int) -> str:
    # a scatter, not F.one_hot: that checks the labels' range with two reductions read back to
    # the host on every call (the relaxation calls the cost's gradient every iteration); the
    # runtime checks the labels once, when the data is loaded
    return f"torch.zeros_like({out}).scatter_(1, label[:, None], 1.0)"


COSTS: dict[str, Cost] = {cost.name: cost for cost in (
    Cost("squared_error", "1/2 |o - onehot(y)|^2", "o - onehot(y)",
         torch_cost=lambda o, n: f"0.5 * total(({o} - {_one_hot(o, n)}) ** 2)",
         torch_grad=lambda o, n: f"{o} - {_one_hot(o, n)}",
         helpers=(TOTAL,)),
    Cost("cross_entropy", "-log softmax(o)_y", "softmax(o) - onehot(y)",
         torch_cost=lambda o, n: f'F.cross_entropy({o}, label, reduction="none")',
         torch_grad=lambda o, n: f"torch.softmax({o}, dim=1) - {_one_hot(o, n)}"),
)}
