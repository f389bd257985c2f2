# ---------------------------------------------------------------------------------------------
# ONNX export of the inference path, against PyTorch: onnxruntime runs the exported graph on a
# batch of another size than the one it was traced with, and its output must equal the
# compiled module's (float32, within 1e-4 relative) for the shipped models (VGG10 at S=32),
# a relaxation model (its free phase unrolled) and a generative model (its reconstruction).
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx, onnxscript and onnxruntime (pip install 'pcdsl[onnx]')")
onnxruntime = pytest.importorskip("onnxruntime", reason="the export check needs onnxruntime")

from helpers import MODELS, ROOT, build, run_cli  # noqa: E402
from pcdsl.export.onnx import InferencePath, export_onnx  # noqa: E402

CASES = [(MODELS / "mlp_digits.pc", ()), (MODELS / "vgg5_cifar10.pc", ()), (MODELS / "hopfield_tiny.pc", ()),
         (MODELS / "vgg10_imagenet.pc", ("S=32",)), (ROOT / "tests" / "models" / "generative_conv.pc", ())]


@pytest.mark.parametrize("path,sets", CASES, ids=lambda c: getattr(c, "stem", None) or "")
def test_onnxruntime_equals_pytorch(path, sets, tmp_path):
    _, model = build(path, list(sets), dtype=torch.float32)
    target = tmp_path / "m.onnx"
    report = export_onnx(model, target, generator=torch.Generator().manual_seed(0))
    assert report["checked"] and report["max_rel_error"] < 1e-4
    onnx.checker.check_model(str(target))
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    x = torch.rand((5, *model.INPUT_SHAPE), generator=torch.Generator().manual_seed(3))
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        want = InferencePath(model)(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert session.get_outputs()[0].name == ("reconstruction" if model.OUTPUT is None else "scores")


def test_the_command_exports_a_run_and_refuses_set_on_it(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", MODELS / "mlp_digits.pc", "--epochs", "1", "--out", out, "--limit", "100").exit_code == 0
    result = run_cli("export", out, "--onnx", tmp_path / "m.onnx")
    assert result.exit_code == 0 and "onnxruntime matches PyTorch" in result.output, result.output
    refused = run_cli("export", out, "--onnx", tmp_path / "n.onnx", "--set", "beta=0.1")
    assert refused.exit_code == 1 and not (tmp_path / "n.onnx").exists()
    missing = run_cli("export", out, "--onnx", tmp_path / "nowhere" / "m.onnx")
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_a_model_whose_free_phase_diverges_is_refused_for_what_it_is(tmp_path):
    result = run_cli("export", ROOT / "tests" / "models" / "own_prediction_recurrent.pc", "--set", "relax_step=50",
                     "--onnx", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "diverges" in result.output
