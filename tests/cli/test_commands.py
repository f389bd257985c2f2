# ---------------------------------------------------------------------------------------------
# The command line, end to end, through click's runner: what a user types and sees.
# Oracles: the JSON the commands print against the model files' declared shapes and hand counts,
# the files a run leaves, and exit codes.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from helpers import MODELS, SHARED_DATA
from pcdsl.runtime.loading import load_model_class
from pcdsl.cli.main import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_check_json_reports_vgg10_shapes_and_parameter_count():
    result = run("check", MODELS / "vgg10_imagenet.pc", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    shapes = {s["name"]: s["shape"] for s in report["states"]}
    # METHOD.md section 4
    assert list(shapes.values()) == [[64, 112, 112], [128, 56, 56], [256, 56, 56], [256, 28, 28], [512, 28, 28],
                                     [512, 14, 14], [512, 14, 14], [512, 7, 7], [2048], [1000]]
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    expected = sum(o * i * 9 + o for i, o in convs) + 25088 * 2048 + 2048 + 2048 * 1000 + 1000
    assert report["parameters"] == expected
    assert report["update_groups"] == [["h2", "h4", "h6", "h8", "h10"], ["h1", "h3", "h5", "h7", "h9"]]


def test_check_text_shows_rules_and_groups():
    result = run("check", MODELS / "mlp_digits.pc")
    assert result.exit_code == 0
    assert "h1 <- relu(a_h1 + h2_w_h1ᵀ·(eps_h2*[a_h2>0]))" in result.stdout
    assert "o <- a_o - beta*∂C/∂o" in result.stdout
    assert "update groups (in traversal order): {h2}  then  {h1, o}" in result.stdout


def test_set_size_recompiles_the_architecture():
    result = run("check", MODELS / "vgg10_imagenet.pc", "--json", "--set", "S=64")
    shapes = {s["name"]: s["shape"] for s in json.loads(result.stdout)["states"]}
    assert shapes["h1"] == [64, 32, 32] and shapes["h8"] == [512, 2, 2]


def test_compile_writes_an_importable_module(tmp_path):
    out = tmp_path / "model.py"
    result = run("compile", MODELS / "hopfield_tiny.pc", "-o", out)
    assert result.exit_code == 0, result.output
    model = load_model_class(out.read_text())()
    assert model.STATES == ("h1", "o") and not model.FEEDFORWARD


def test_compile_to_missing_folder_is_a_clear_error(tmp_path):
    result = run("compile", MODELS / "mlp_digits.pc", "-o", tmp_path / "nope" / "model.py")
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_compile_os_error_is_a_clear_error(tmp_path):
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file, where the output path needs a folder")
    result = run("compile", MODELS / "mlp_digits.pc", "-o", not_a_folder / "model.py")
    assert result.exit_code == 1
    assert f"error: cannot write {not_a_folder / 'model.py'}: Not a directory" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_gradcheck_json_and_exit_status():
    ok = run("gradcheck", MODELS / "mlp_digits.pc", "--beta", "1e-4", "--steps", "30", "--json")
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["min_cosine"] > 0.9999 and len(report["params"]) == 6
    # three steps cannot carry the error signal to h1: the check must fail, with exit 1
    bad = run("gradcheck", MODELS / "mlp_digits.pc", "--beta", "0.5", "--steps", "1", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["passed"] is False


def test_train_eval_and_refusal_to_overwrite(tmp_path):
    out = tmp_path / "run"
    first = run("train", MODELS / "mlp_digits.pc", "--epochs", "2", "--out", out, "--limit", "300")
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert {"epoch", "train_loss", "test_acc", "test_top5", "seconds"} <= set(lines[0])
    assert 0.0 <= lines[-1]["test_acc"] <= 1.0
    assert (out / "model.py").exists() and (out / "config.json").exists()
    assert (out / "checkpoints" / "epoch_002.pt").exists()
    before = (out / "metrics.jsonl").read_text()
    again = run("train", MODELS / "mlp_digits.pc", "--epochs", "2", "--out", out)
    assert again.exit_code == 1 and "--resume" in again.output
    assert (out / "metrics.jsonl").read_text() == before
    evaluated = run("eval", out, "--json", "--limit", "300")   # the run saw the first 300 test examples
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["acc"] == pytest.approx(lines[-1]["test_acc"])


def test_train_with_a_wrong_data_path_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = run("train", MODELS / "mlp_digits.pc", "--data", tmp_path / "missing", "--out", out)
    assert result.exit_code == 1
    assert "error:" in result.output
    assert not out.exists()


def test_eval_of_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "epoch_001.pt"
    bad.write_bytes(b"not a checkpoint at all")
    result = run("eval", bad)
    assert result.exit_code == 1
    assert "error:" in result.output


def test_bad_set_key_suggests_the_right_one():
    result = run("check", MODELS / "mlp_digits.pc", "--set", "bta=0.1")
    assert result.exit_code == 1
    assert "error[E501]" in result.output and "did you mean `beta`?" in result.output


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="../shared/data/mnist is not present")
def test_train_mlp_on_real_mnist_subset(tmp_path):
    result = run("train", MODELS / "mlp_mnist.pc", "--data", SHARED_DATA / "mnist", "--epochs", "1",
                 "--limit", "3000", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["test_acc"] > 0.8   # 3000 examples, one epoch: far above chance (0.1)


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED_DATA / "cifar10-jpeg").exists(), reason="../shared/data/cifar10-jpeg is not present")
def test_vgg10_trains_through_the_imagenet_layout_loader(tmp_path):
    """VGG10 at 32x32 (`S=32`) on CIFAR-10 JPEGs resized by the ImageNet-layout loader."""
    result = run("train", MODELS / "vgg10_imagenet.pc", "--data", SHARED_DATA / "cifar10-jpeg", "--epochs", "1",
                 "--limit", "16", "--set", "S=32", "--set", "batch=8", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["train_loss"] == metrics["train_loss"]  # finite


def test_bench_reports_side_by_side_ratio():
    result = run("bench", MODELS / "mlp_digits.pc", "--batch", "8", "--rounds", "1", "--warmup", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["variants"]) == {"ep", "bp", "ep_reference"}     # no compiling on a CPU by default
    for entry in report["variants"].values():
        assert len(entry["times_s"]) == 1 and entry["ms_per_step"] > 0 and entry["tflops"] > 0
    ratios = report["ratios"]
    assert ratios["ep_over_bp"] > 0 and ratios["reference_over_ep"] > 0
    assert ratios["cost_model"] == (4 * 4 + 3) / 3   # K = 4 in mlp_digits.pc
    assert ratios["flop_ratio"] == report["flops_per_example"]["ep"] / report["flops_per_example"]["bp"]
    assert report["batch"] == 8 and report["channels_last"] is False   # a dense model


def test_keep_checkpoints_prunes_old_epochs_but_keeps_last(tmp_path):
    out = tmp_path / "run"
    result = run("train", MODELS / "mlp_digits.pc", "--epochs", "3", "--limit", "64", "--out", out,
                 "--set", "keep_checkpoints=1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_003.pt", "last.pt"]


def test_reruns_without_out_start_fresh_folders_and_resume_takes_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert run("train", MODELS / "mlp_digits.pc", "--epochs", "1", "--limit", "64").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mlp_digits-ep", "mlp_digits-ep-2"]
    resumed = run("train", MODELS / "mlp_digits.pc", "--epochs", "2", "--limit", "64", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert len((tmp_path / "runs" / "mlp_digits-ep-2" / "metrics.jsonl").read_text().splitlines()) == 2
    assert len((tmp_path / "runs" / "mlp_digits-ep" / "metrics.jsonl").read_text().splitlines()) == 1


def test_models_lists_the_shipped_models_and_every_command_takes_their_names(tmp_path, monkeypatch):
    listed = run("models")
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == sorted(p.stem for p in MODELS.glob("*.pc"))
    monkeypatch.chdir(tmp_path)                 # no models/ folder here: the names are package data
    checked = run("check", "vgg10_imagenet", "--json")
    assert checked.exit_code == 0, checked.stderr
    assert json.loads(checked.stdout)["parameters"] == 62_651_752
    assert run("compile", "mlp_digits.pc", "-o", "m.py").exit_code == 0
    typo = run("check", "vgg10_imagnet")
    assert typo.exit_code == 1 and "did you mean `vgg10_imagenet`?" in typo.stderr


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlp_digits").write_text((MODELS / "hopfield_tiny.pc").read_text(), encoding="utf-8")
    assert json.loads(run("check", "mlp_digits", "--json").stdout)["model"] == "hopfield_tiny"
