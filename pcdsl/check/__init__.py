"""Stage 2: ModelIR -> CheckedModel (shapes, energies, derived update rules, schedule)."""
from .model import CheckedModel, TermInfo, check_model

__all__ = ["CheckedModel", "TermInfo", "check_model"]
