# ---------------------------------------------------------------------------------------------
# Optimiser and schedule against closed forms.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math

import pytest
import torch

from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.optim import LRSchedule, cosine_lr, hold_learning_rate, make_optimizer, make_schedule


def sgd_for(config: TrainConfig):
    parameter = torch.nn.Parameter(torch.zeros(3))
    return parameter, make_optimizer([parameter], config)


def test_cosine_closed_form():
    lr, low, total = 0.02, 2e-6, 1000
    assert cosine_lr(0, total, lr, low) == lr
    assert cosine_lr(500, total, lr, low) == pytest.approx((lr + low) / 2)
    assert cosine_lr(250, total, lr, low) == pytest.approx(low + (lr - low) * (1 + math.sqrt(0.5)) / 2)
    assert cosine_lr(1000, total, lr, low) == pytest.approx(low)
    assert cosine_lr(5000, total, lr, low) == pytest.approx(low)    # held at min_lr past the end


def test_schedule_drives_the_optimizer_per_iteration():
    config = TrainConfig(lr=0.1, min_lr=0.0, schedule="cosine")
    _, optimizer = sgd_for(config)
    schedule = make_schedule(optimizer, config, total_steps=4)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [0.1 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    assert seen == pytest.approx(expected)
    assert schedule.current == pytest.approx(0.0)


def test_constant_schedule():
    config = TrainConfig(lr=0.03, schedule="constant")
    _, optimizer = sgd_for(config)
    schedule = make_schedule(optimizer, config, total_steps=3)
    for _ in range(6):
        assert optimizer.param_groups[0]["lr"] == 0.03
        schedule.step()


def test_schedule_state_round_trip_resumes_the_same_rate():
    config = TrainConfig(lr=0.1, min_lr=0.001)
    _, optimizer = sgd_for(config)
    schedule = make_schedule(optimizer, config, total_steps=10)
    for _ in range(3):
        schedule.step()
    _, fresh_optimizer = sgd_for(config)
    resumed = make_schedule(fresh_optimizer, config, total_steps=99)   # the saved horizon wins
    resumed.load_state_dict(schedule.state_dict())
    assert resumed.total_steps == 10
    assert fresh_optimizer.param_groups[0]["lr"] == pytest.approx(cosine_lr(3, 10, 0.1, 0.001))


def test_sgd_settings_come_from_the_config():
    config = TrainConfig(lr=0.5, momentum=0.9, nesterov=True, weight_decay=0.01)
    parameter, optimizer = sgd_for(config)
    group = optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 0.01)
    # one step from w = 1 with gradient g = 2: d = g + wd*w; nesterov: update = d + momentum*d
    with torch.no_grad():
        parameter.fill_(1.0)
    parameter.grad = torch.full((3,), 2.0)
    optimizer.step()
    d = 2.0 + 0.01 * 1.0
    assert parameter.detach() == pytest.approx(torch.full((3,), 1.0 - 0.5 * (d + 0.9 * d)))


def test_unknown_schedule_is_rejected():
    _, optimizer = sgd_for(TrainConfig())
    with pytest.raises(ValueError, match="schedule"):
        LRSchedule(optimizer, "linear", 0.1, 0.0, 10)


@pytest.mark.parametrize("saved_as_tensor,resumed_as_tensor", [(False, True), (True, False), (True, True)])
def test_resumed_rate_is_held_the_way_the_resumed_step_needs(saved_as_tensor, resumed_as_tensor):
    """A run started eagerly may resume compiled and the other way round: the rate comes back
    from the checkpoint as it was saved, and is held again as the new step needs it (a float
    rate in a compiled step would recompile it whenever the schedule moves)."""
    config = TrainConfig(lr=0.1, min_lr=0.0, schedule="cosine")
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = make_optimizer([parameter], config, tensor_lr=saved_as_tensor)
    schedule = make_schedule(optimizer, config, total_steps=10)
    for _ in range(4):
        schedule.step()
    saved = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}

    resumed_parameter = torch.nn.Parameter(torch.zeros(3))
    resumed = make_optimizer([resumed_parameter], config, tensor_lr=resumed_as_tensor)
    resumed.load_state_dict(saved["optimizer"])
    hold_learning_rate(resumed, as_tensor=resumed_as_tensor)
    resumed_schedule = make_schedule(resumed, config, total_steps=10)
    resumed_schedule.load_state_dict(saved["schedule"])
    rate = resumed.param_groups[0]["lr"]
    assert isinstance(rate, torch.Tensor) == resumed_as_tensor
    assert float(rate) == pytest.approx(cosine_lr(4, 10, 0.1, 0.0), rel=1e-6)
