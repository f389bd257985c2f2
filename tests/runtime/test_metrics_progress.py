# ---------------------------------------------------------------------------------------------
# metrics.jsonl (append, atomic rewrite, strict JSON) and progress output without a terminal.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import json

import pytest
import torch

from pcdsl.runtime.evaluate import evaluate
from pcdsl.runtime.metrics import append_metrics, read_metrics, write_metrics
from pcdsl.runtime.progress import EpochProgress
from tests.support.fake_data import gaussian_clusters
from tests.support.handwritten_pcn import Model


def test_append_and_rewrite(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_metrics(path, {"epoch": 1, "test_acc": 0.5})
    append_metrics(path, {"epoch": 2, "test_acc": 0.75})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    write_metrics(path, [{"epoch": 1, "test_acc": 0.5}])
    assert read_metrics(path) == [{"epoch": 1, "test_acc": 0.5}]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    assert read_metrics(tmp_path / "absent.jsonl") == []


def test_non_finite_numbers_are_refused(tmp_path):
    with pytest.raises(ValueError):
        append_metrics(tmp_path / "metrics.jsonl", {"loss": float("nan")})


def test_plain_progress_reports_long_epochs_about_ten_times():
    lines = []
    with EpochProgress(epoch=2, epochs=5, batches=200, log=lines.append, live=False) as progress:
        for _ in range(200):
            progress.update(1.5)
    assert len(lines) == 9                      # every 20 batches, not after the last one
    assert lines[0].startswith("  epoch 2/5  batch 20/200  loss 1.5000")
    assert "eta" in lines[0]


def test_plain_progress_is_quiet_for_short_epochs():
    lines = []
    with EpochProgress(epoch=1, epochs=1, batches=30, log=lines.append, live=False) as progress:
        for _ in range(30):
            progress.update(0.1)
    assert lines == [] and progress.mean_loss == pytest.approx(0.1)


def test_live_progress_runs_without_a_terminal():
    lines = []
    with EpochProgress(epoch=1, epochs=1, batches=3, log=lines.append, live=True) as progress:
        for _ in range(3):
            progress.update(0.2)
    assert lines == []                          # the bar draws on stderr, the log stays clean


def test_evaluate_counts_top1_and_top5():
    data = gaussian_clusters(n_train=8, n_test=50, num_classes=10)
    model = Model(sizes=(16, 12, 10))
    result = evaluate(model, data.test, batch_size=16)
    with torch.no_grad():
        logits = model(data.test.x)["h2"]
    assert result["acc"] == pytest.approx(float((logits.argmax(1) == data.test.y).float().mean()))
    top5 = (logits.topk(5, 1).indices == data.test.y[:, None]).any(1).float().mean()
    assert result["top5"] == pytest.approx(float(top5))
    with torch.no_grad():
        mean_cost = float(model.cost(model(data.test.x), data.test.y).mean())
    assert result["loss"] == pytest.approx(mean_cost, rel=1e-6)
    small = Model(sizes=(16, 5))
    assert evaluate(small, gaussian_clusters(8, 20, num_classes=5).test, 16)["top5"] is None
