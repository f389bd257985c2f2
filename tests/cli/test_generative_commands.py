# ---------------------------------------------------------------------------------------------
# A generative model through the commands a user runs: train (inference learning, the
# reconstruction error as its loss), eval (the reconstruction error, against one recomputed
# here from the run's own module), sample (a PNG of the right size) and the refusals.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from helpers import MODELS, run_cli

# digits: 8 x 8 images, so the input is a vector of 64 and the samples are 8 x 8
DIGITS_GENERATIVE = """model digits_generative {
  input x  : [64] ~ sigmoid(dense(h1, 64) + bias)
  state h1 : [32] ~ tanh(dense(h2, 32) + bias)
  state h2 : [8]
  energy prior = 0.5 * sum(h2 ** 2)
}
train {
  pcil(free_steps=30)
  relax(step=0.1)
  sgd(lr=0.1, momentum=0.9)
  batch 32
}
"""


run = run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generative")
    model_file = folder / "digits_generative.pc"
    model_file.write_text(DIGITS_GENERATIVE)
    out = folder / "run"
    result = run("train", model_file, "--epochs", "2", "--out", out, "--limit", "400")
    assert result.exit_code == 0, result.output
    assert "generative inference learning" in result.output
    return out


def test_training_lowers_the_reconstruction_error(trained):
    lines = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert lines[0]["train_acc"] is None and lines[0]["test_acc"] is None
    assert lines[1]["test_loss"] < lines[0]["test_loss"]


def test_eval_reports_the_reconstruction_error_of_the_runs_module(trained):
    evaluated = run("eval", trained, "--json", "--limit", "400")
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)
    assert "acc" not in metrics and metrics["top_down_error"] >= 0.0
    lines = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert metrics["reconstruction_error"] == pytest.approx(lines[-1]["test_loss"], rel=1e-6)
    # the same number from the run's module by hand: relax, predict, mean squared error
    from pcdsl.data import load_data
    from pcdsl.runtime.trainer import load_run
    loaded = load_run(trained)
    x = torch.cat([x for x, _ in load_data("digits", (64,), limit_test=400).test.batches(100, shuffle=False)])
    with torch.no_grad():
        states = loaded.model(x)
        error = ((loaded.model.predictions(x, states)["x"] - x) ** 2).mean()
    assert metrics["reconstruction_error"] == pytest.approx(float(error), rel=1e-5)
    text = run("eval", trained, "--limit", "400")
    assert "reconstruction_error=" in text.stdout


def test_sample_writes_png_grids(trained, tmp_path):
    samples, pairs = tmp_path / "samples.png", tmp_path / "pairs.png"
    result = run("sample", trained, "-o", samples, "--count", "12", "--columns", "4", "--fit-examples", "200",
                 "--reconstructions", pairs)
    assert result.exit_code == 0, result.output
    with Image.open(samples) as picture:
        # 3 rows of 4 images of 8 x 8, 2 pixels apart, drawn twice as large
        assert picture.format == "PNG" and picture.size == (2 * (4 * 10 + 2), 2 * (3 * 10 + 2))
    with Image.open(pairs) as picture:
        assert picture.format == "PNG" and picture.size[0] == 2 * (4 * 10 + 2)
    again = tmp_path / "again.png"
    assert run("sample", trained, "-o", again, "--count", "12", "--columns", "4", "--fit-examples", "200").exit_code == 0
    assert again.read_bytes() == samples.read_bytes()         # the seed fixes the samples


def test_sample_refuses_a_supervised_run_and_a_missing_folder(trained, tmp_path):
    missing = run("sample", trained, "-o", tmp_path / "nowhere" / "s.png")
    assert missing.exit_code == 1 and "does not exist" in missing.output
    supervised = tmp_path / "supervised"
    assert run("train", MODELS / "mlp_digits.pc", "--epochs", "1", "--out", supervised, "--limit", "100").exit_code == 0
    refused = run("sample", supervised, "-o", tmp_path / "s.png")
    assert refused.exit_code == 1 and "supervised model" in refused.output
    assert not (tmp_path / "s.png").exists()


def test_supervised_algorithms_are_refused_with_e414(tmp_path):
    model_file = tmp_path / "g.pc"
    model_file.write_text(DIGITS_GENERATIVE)
    refused = run("train", model_file, "--algorithm", "ep", "--out", tmp_path / "run", "--limit", "50")
    assert refused.exit_code == 1 and "E414" in refused.output
    assert not (tmp_path / "run").exists()


DIGITS_CLASSIFIER = DIGITS_GENERATIVE.replace("state h2 : [8]", "state h2 : [10]").replace(
    "pcil(free_steps=30)", "pcil(free_steps=30, label=h2)")


def test_a_generative_classifier_trains_classifies_and_samples_each_class(tmp_path):
    model_file = tmp_path / "digits_classifier.pc"
    model_file.write_text(DIGITS_CLASSIFIER)
    out = tmp_path / "run"
    trained = run("train", model_file, "--epochs", "2", "--out", out, "--limit", "400")
    assert trained.exit_code == 0, trained.output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["test_acc"] > 0.3            # ten classes: chance is 0.1
    evaluated = json.loads(run("eval", out, "--json", "--limit", "400").stdout)
    assert evaluated["acc"] == pytest.approx(lines[-1]["test_acc"])
    samples = tmp_path / "classes.png"
    assert run("sample", out, "-o", samples, "--columns", "3", "--fit-examples", "100").exit_code == 0
    with Image.open(samples) as picture:          # ten rows (one per class) of three 8 x 8 images
        assert picture.size == (2 * (3 * 10 + 2), 2 * (10 * 10 + 2))


def test_a_label_state_smaller_than_the_classes_is_refused(tmp_path):
    model_file = tmp_path / "small.pc"
    model_file.write_text(DIGITS_GENERATIVE.replace("pcil(free_steps=30)", "pcil(free_steps=30, label=h2)"))
    refused = run("train", model_file, "--epochs", "1", "--out", tmp_path / "run", "--limit", "50")
    assert refused.exit_code == 1 and "10 classes" in refused.output and "tells apart 8" in refused.output


def test_a_generative_model_trains_on_an_image_folder_of_one_class(tmp_path):
    """Unlabelled images (one folder) are a generative model's natural data."""
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 40), ("test", 10)):
        folder = tmp_path / "images" / split / "all"
        folder.mkdir(parents=True)
        for index in range(count):
            pixels = (torch.rand((8, 8), generator=generator) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(folder / f"{index}.png")
    model_file = tmp_path / "g.pc"
    model_file.write_text(DIGITS_GENERATIVE)      # input [64]: the 8 x 8 images flattened
    result = run("train", model_file, "--data", tmp_path / "images", "--epochs", "1", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output


def test_commands_without_a_meaning_for_generative_models_say_so(tmp_path):
    model_file = tmp_path / "g.pc"
    model_file.write_text(DIGITS_GENERATIVE)
    bench = run("bench", model_file, "--rounds", "1")
    assert bench.exit_code == 1 and "generative" in bench.output
    from helpers import build
    from pcdsl.runtime.estimators import bp_gradients, ep_gradients
    _, model = build(model_file)
    x = torch.rand((2, 64), dtype=torch.float64)
    for estimate in (lambda: ep_gradients(model, x, None, 0.1, 5), lambda: bp_gradients(model, x, None)):
        with pytest.raises(ValueError, match="E414"):
            estimate()


CYCLE = """model cycle {
  input x  : [64] ~ sigmoid(dense(h1, 64) + bias)
  state h1 : [8]  ~ tanh(dense(x, 8) + bias)
}
train {
  pcil(free_steps=10)
}
"""


def test_a_generative_model_without_a_top_state_evaluates_but_cannot_sample(tmp_path):
    model_file = tmp_path / "cycle.pc"
    model_file.write_text(CYCLE)
    out = tmp_path / "run"
    assert run("train", model_file, "--epochs", "1", "--out", out, "--limit", "100").exit_code == 0
    metrics = json.loads(run("eval", out, "--json", "--limit", "100").stdout)
    assert metrics["top_down_error"] is None and metrics["reconstruction_error"] > 0
    refused = run("sample", out, "-o", tmp_path / "s.png", "--fit-examples", "50")
    assert refused.exit_code == 1 and "no top state" in refused.output
