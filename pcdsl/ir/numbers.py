# ---------------------------------------------------------------------------------------------
# Which numbers a model may hold: the compiled module runs in float32 by default, so every
# number of a model file, and every constant computed from them, must be a finite float32 that
# does not round to zero (E122). Lowering checks literals, the checker checks what it folds.
# Tensors are limited in size (E208) so that a typo in a size is an error, not an exhausted memory.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math
from typing import Optional

MAX_ELEMENTS = 2**31 - 1          # per tensor, per example (states, parameters, intermediates)
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38   # the smallest normal float32


def unrepresentable(value: float) -> Optional[str]:
    """Why a float32 model cannot hold `value`, or None when it can."""
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        return "it exceeds the float32 range (3.4e38)"
    if value != 0 and abs(value) < FLOAT32_TINY:
        return "it is below the smallest normal float32 (1.2e-38) and would be lost"
    return None
