# ---------------------------------------------------------------------------------------------
# The inference path of a compiled model as ONNX: the free phase to the output's class scores
# (a feedforward PCN's forward pass; a relaxation's FREE_STEPS iterations, unrolled into the
# graph), or for a generative model the reconstruction of its input. torch.onnx's exporter
# (torch.export, then onnxscript) writes it with a dynamic batch dimension; onnxruntime, where
# installed, runs it on a batch of another size and the result is compared with PyTorch's.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch

from pcdsl.files import atomic_write

TOLERANCE = 1e-4          # largest |onnx - torch| / (1 + |torch|) accepted, float32


class ExportError(ValueError):
    """The model cannot be exported or its export does not match; the message is for the user."""


class InferencePath(torch.nn.Module):
    """x -> the output state (class scores), or a generative model's reconstruction of x."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        states = self.model(x)
        if self.model.OUTPUT is None:
            return self.model.predictions(x, states)[self.model.INPUT]
        return states[self.model.OUTPUT]


def output_name(model) -> str:
    return "reconstruction" if model.OUTPUT is None else "scores"


def export_onnx(model, path: Path, *, generator: torch.Generator | None = None) -> dict:
    """Write `model`'s inference path to `path` (atomically) and check it with onnxruntime:
    {"file", "parameters", "checked", "max_abs_error", "max_rel_error", "batch"}."""
    try:
        import onnx  # noqa: F401  (the exporter needs it, and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({error.name} is missing): "
                          "pip install 'pcdsl[onnx]'") from None
    model = model.float().eval().cpu()
    path = Path(path)
    example = torch.rand((2, *model.INPUT_SHAPE), generator=generator)
    batch = torch.export.Dim("batch", min=1)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), _quiet_loggers():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(InferencePath(model), (example,), dynamo=True,
                                        input_names=["x"], output_names=[output_name(model)],
                                        dynamic_shapes=({0: batch},), verbose=False)
        except Exception as error:    # the exporter's own errors, phrased for the user
            raise ExportError(f"torch.onnx could not export {model.NAME}: {type(error).__name__}: "
                              f"{str(error).splitlines()[0][:300]}") from None
    data = program.model_proto.SerializeToString()
    atomic_write(path, data)
    report = {"file": str(path), "bytes": len(data), "parameters": sum(p.numel() for p in model.parameters()),
              "output": output_name(model), "checked": False}
    try:
        import onnxruntime
    except ImportError:
        return report
    x = torch.rand((3, *model.INPUT_SHAPE), generator=generator)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        want = InferencePath(model)(x)
    if not bool(torch.isfinite(want).all()):
        raise ExportError(f"{model.NAME}'s own free phase gives non-finite outputs (its relaxation diverges), so "
                          f"there is nothing to compare the export with; {path} was written for inspection")
    error = (got - want).abs()
    report.update(checked=True, batch=x.shape[0], max_abs_error=float(error.max()),
                  max_rel_error=float((error / (1 + want.abs())).max()))
    if not report["max_rel_error"] <= TOLERANCE:
        raise ExportError(f"the ONNX model's output differs from PyTorch's by up to {report['max_abs_error']:.3g} "
                          f"(relative {report['max_rel_error']:.3g}, tolerance {TOLERANCE:g}); {path} was written "
                          "for inspection")
    return report


@contextlib.contextmanager
def _quiet_loggers():
    """torch.onnx logs each stage and missing torchvision operators; none of it is the user's."""
    names = ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo", "torch.fx")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
