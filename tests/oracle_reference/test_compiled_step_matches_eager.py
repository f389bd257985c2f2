# ---------------------------------------------------------------------------------------------
# Oracle: the eager step. torch.compile of the whole training step (free phase, both nudged
# phases and the parameter gradients as one program; backprop's forward and cost with their
# compiled backward) must compute what the eager step computes, to float64 rounding, and the
# compiled EP estimate must still approach backprop's gradient as beta -> 0 (gradcheck with
# compile on). The EP step must be one graph: no break, so no host synchronisation inside.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import backprop_grads, build, cosine, random_batch
from pcdsl.runtime.step import StepOptions, TrainStep, ep_step

ROOT = Path(__file__).resolve().parents[2]
# a conv + max-pool + dense PCN (the wavefront, the carry, pool indices, conv weight gradients)
# and a relaxation model (Hopfield: no feedforward free phase)
MODELS = {"tiny_pcn": ROOT / "tests" / "golden" / "tiny_pcn.pc", "hopfield_tiny": ROOT / "models" / "hopfield_tiny.pc"}


@pytest.fixture(scope="module", params=list(MODELS))
def compiled_model(request):
    # torch.compile unrolls the relaxation loops: few iterations keep the compilation short. The
    # PCN converges in a dozen (EP then matches backprop); the Hopfield model does not, so it
    # is compared with the eager step only.
    compiled, model = build(MODELS[request.param])
    config = compiled.ir.train.model_copy(update={"beta": 1e-4, "steps": 12 if model.FEEDFORWARD else 6,
                                                  "free_steps": 8})
    return request.param, model, config


def test_compiled_ep_step_equals_eager_and_backprop(compiled_model):
    name, model, config = compiled_model
    x, label = random_batch(model, batch=4)
    eager = TrainStep(model, config, StepOptions(compile=False))
    compiled = TrainStep(model, config, StepOptions(compile=True))
    result_eager = eager(x, label)
    grads_eager = [p.grad.clone() for p in model.parameters()]
    result_compiled = compiled(x, label)
    grads_compiled = [p.grad.clone() for p in model.parameters()]
    assert bool(result_compiled.ok) and bool(result_eager.ok)
    torch.testing.assert_close(result_compiled.loss, result_eager.loss, rtol=1e-12, atol=1e-12)
    for (param, _), a, b in zip(model.named_parameters(), grads_compiled, grads_eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12, msg=param)
    if model.FEEDFORWARD:
        truth = backprop_grads(model, x, label)
        assert min(cosine(a, b) for a, b in zip(grads_compiled, truth)) > 0.9999, name


def test_compiled_bp_step_equals_eager(compiled_model):
    name, model, config = compiled_model
    config = config.model_copy(update={"algorithm": "bp"})
    x, label = random_batch(model, batch=4)
    TrainStep(model, config, StepOptions(compile=False))(x, label)
    eager = [p.grad.clone() for p in model.parameters()]
    TrainStep(model, config, StepOptions(compile=True))(x, label)
    for (param, _), a, b in zip(model.named_parameters(), [p.grad for p in model.parameters()], eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=param)


def test_the_ep_step_is_one_graph(compiled_model):
    name, model, config = compiled_model
    x, label = random_batch(model, batch=4)
    explained = torch._dynamo.explain(lambda x, label: ep_step(model, x, label, config, "centered", check=False))(
        x, label)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_other_batch_sizes_run_eagerly_without_recompiling(compiled_model):
    """An epoch's short last batch must not cost a second compilation."""
    name, model, config = compiled_model
    step = TrainStep(model, config, StepOptions(compile=True))
    x, label = random_batch(model, batch=4)
    step(x, label)
    short_x, short_label = random_batch(model, batch=3, seed=5)
    torch._dynamo.utils.counters.clear()
    result = step(short_x, short_label)
    assert bool(result.ok) and result.logits.shape[0] == 3
    assert not torch._dynamo.utils.counters["stats"]["calls_captured"]
