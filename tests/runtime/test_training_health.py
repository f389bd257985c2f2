# ---------------------------------------------------------------------------------------------
# TrainingHealth against hand-made loss and accuracy sequences (the expected verdicts worked out
# from its two rules), and its wiring into the trainer.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import pytest

from pcdsl.runtime import health as health_module
from pcdsl.runtime.health import TrainingHealth
from pcdsl.runtime.trainer import RunError
from tests.runtime.test_trainer import config, run
from tests.support.fake_data import gaussian_clusters


def feed(health, windows, size=50):
    """(loss, acc) per window of `size` steps; the messages, by window index."""
    said = {}
    for index, (loss, acc) in enumerate(windows):
        message = health.observe(loss, acc, index * size + 1, (index + 1) * size)
        if message:
            said[index] = message
    return said


def test_a_healthy_run_says_nothing():
    said = feed(TrainingHealth(10, 100), [(2.3, 0.1), (1.5, 0.4), (0.9, 0.7), (1.0, 0.68), (0.8, 0.75)])
    assert said == {}


def test_an_exploding_loss_is_reported_once_after_divergence_steps():
    windows = [(2.3, 0.1), (1.0, 0.6), (30.0, 0.5), (2e3, 0.3), (2e11, 0.1), (3e11, 0.1), (1e12, 0.1)]
    said = feed(TrainingHealth(10, 150), windows)
    # failing from window 2 (steps 101-150); 150 steps of it by the end of window 4
    assert list(said) == [4]
    assert "since step 101" in said[4] and "2e+11" in said[4] and "best (1)" in said[4]


def test_a_loss_that_explodes_within_the_first_window_is_measured_from_the_first_step():
    health = TrainingHealth(10, 40)
    said = {}
    for index, loss in enumerate([9.7e14, 2.6e14, 4.7e13]):    # lr = 20 on digits
        said[index] = health.observe(loss, 0.0988, index * 23 + 1, (index + 1) * 23,
                                     start_loss=2.31 if index == 0 else loss * 0.9)
    assert said[0] is None and said[1] is not None and said[2] is None
    assert "since step 1:" in said[1] and "best (2.31)" in said[1]


def test_a_recovery_resets_the_count():
    windows = [(1.0, 0.6), (30.0, 0.5), (0.9, 0.6), (40.0, 0.5), (50.0, 0.5)]
    assert feed(TrainingHealth(10, 150), windows) == {}


def test_accuracy_collapsing_to_chance_is_reported():
    windows = [(2.3, 0.1), (1.2, 0.5), (2.2, 0.11), (2.3, 0.1)]
    said = feed(TrainingHealth(10, 100), windows)
    assert list(said) == [3] and "10.0 %" in said[3] and "chance is 10.0 %" in said[3] and "50.0 %" in said[3]


def test_a_run_that_never_left_chance_is_not_called_collapsed():
    assert feed(TrainingHealth(10, 50), [(2.3, 0.1)] * 6) == {}


def _always_failing(monkeypatch):
    def observe(self, loss, acc, first_step, last_step, start_loss=None):
        self.failing_since = self.failing_since or first_step
        return f"training is failing since step {self.failing_since}: a test's verdict"
    monkeypatch.setattr(health_module.TrainingHealth, "observe", observe)


def test_the_trainer_warns_and_goes_on(tmp_path, monkeypatch):
    _always_failing(monkeypatch)
    lines = []
    history = run(tmp_path / "run", config(epochs=1, divergence_steps=1), gaussian_clusters(512, 64), lines=lines)
    assert len(history) == 1
    assert any(line.startswith("warning: training is failing since step") for line in lines), lines


def test_stop_on_divergence_stops_and_names_the_checkpoint_from_before(tmp_path, monkeypatch):
    data = gaussian_clusters(512, 64)
    run(tmp_path / "run", config(epochs=2, divergence_steps=1), data, epochs=1)
    _always_failing(monkeypatch)
    with pytest.raises(RunError, match=r"training is failing since step 17.*epoch_001\.pt") as caught:
        run(tmp_path / "run", config(epochs=2, divergence_steps=1, stop_on_divergence=True), data, resume=True)
    assert "a test's verdict" in str(caught.value)
