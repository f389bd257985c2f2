"""Stage 4: Plan -> source code, through generators with one small interface:
`generator.generate(plan) -> str`."""
from .torch_module import TorchModuleGenerator

GENERATORS = {"torch": TorchModuleGenerator()}

__all__ = ["GENERATORS", "TorchModuleGenerator"]
