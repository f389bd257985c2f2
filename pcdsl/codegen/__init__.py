"""Stage 3: CheckedModel -> source code, through generators with one small interface:
`generator.generate(checked) -> str`."""
from .torch_module import TorchModuleGenerator

GENERATORS = {"torch": TorchModuleGenerator()}

__all__ = ["GENERATORS", "TorchModuleGenerator"]
