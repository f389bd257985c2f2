# ---------------------------------------------------------------------------------------------
# Optimiser and schedule against closed forms.
# ---------------------------------------------------------------------------------------------
from __future__ import annotations

import math

import pytest
import torch

from pcdsl.ir.config import TrainConfig
from pcdsl.runtime.optim import LRSchedule, cosine_lr, make_optimizer, make_schedule


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
