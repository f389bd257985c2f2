# ---------------------------------------------------------------------------------------------
# Generated-source stand-ins: the hand-written PCN as the text `train()` expects.
#
# The trainer builds models as `Model()` from source text, the way it will from compiler output.
# The hand-written module takes its sizes as constructor arguments, so the text here is that
# module plus a small subclass with the chosen sizes baked in as defaults.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from pathlib import Path

HANDWRITTEN_PCN = Path(__file__).with_name("handwritten_pcn.py")


def handwritten_source(sizes: tuple[int, ...], cost: str = "cross_entropy", gain: float = 1.0,
                       gains: dict[str, float] | None = None) -> str:
    configured = (
        "\n\n# ---- configured for this run -------------------------------------------------\n"
        "_HandwrittenPCN = Model\n\n\n"
        "class Model(_HandwrittenPCN):\n"
        "    def __init__(self):\n"
        f"        super().__init__(sizes={tuple(sizes)!r}, cost={cost!r}, gain={gain!r}, "
        f"gains={gains!r})\n")
    return HANDWRITTEN_PCN.read_text(encoding="utf-8") + configured
