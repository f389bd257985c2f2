# Shared helpers for the test suite: compile a model file (or text) and load its module.
from __future__ import annotations

from pathlib import Path

import torch

from pcdsl.pipeline import compile_file, compile_text
from pcdsl.runtime.loading import load_model_class

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SHARED_DATA = ROOT.parent / "shared" / "data"


def build(path_or_text: str | Path, sets: list[str] | None = None, seed: int = 0, dtype=torch.float64,
          file: str = "<test>.pc"):
    """(compiled, model instance) for a model file path or model text."""
    if isinstance(path_or_text, Path):
        compiled = compile_file(path_or_text, sets or [])
    else:
        compiled = compile_text(path_or_text, file, sets or [])
    model_cls = load_model_class(compiled.source)
    torch.manual_seed(seed)
    model = model_cls().to(dtype)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return compiled, model


def random_batch(model, batch: int = 3, seed: int = 1, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    if model.NUM_CLASSES is None:      # a generative model: data in [0, 1] like images, no labels
        return torch.rand((batch, *model.INPUT_SHAPE), generator=generator).to(dtype), None
    x = torch.randn((batch, *model.INPUT_SHAPE), generator=generator).to(dtype)
    label = torch.randint(0, model.NUM_CLASSES, (batch,), generator=generator)
    return x, label


def backprop_grads(model, x, label, free_steps=None):
    """The oracle: autograd through the free phase, written here, not taken from the runtime."""
    model.zero_grad()
    model.cost(model(x, free_steps), label).mean().backward()
    grads = [p.grad.detach().clone() for p in model.parameters()]
    model.zero_grad()
    return grads


def ep_grads(model, x, label, beta, steps, **options):
    from pcdsl.runtime.estimators import ep_gradients
    return ep_gradients(model, x, label, beta, steps, **options)["grads"]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def rel_error(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    return ((estimate - truth).norm() / truth.norm()).item()


def run_cli(*args):
    """`pcdsl ARGS...` in-process (click's runner); a traceback in the output fails the test."""
    from click.testing import CliRunner
    from pcdsl.cli.main import main
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result
