"""Stage 3: CheckedModel -> Plan, the target-independent program (program.py), built by
build.py and optimised by passes.py (loop-invariant hoisting, the carry between half-sweeps)."""
from .build import make_plan
from .program import Assign, HalfSweep, Phase, Plan, Relaxation, StateUpdate

__all__ = ["make_plan", "Plan", "Phase", "Assign", "HalfSweep", "Relaxation", "StateUpdate"]
