"""The learning-rate schedules: a pure function of the update and the plateau decays earned."""

import pytest

from attnmt.config import Config, TrainConfig
from attnmt.training import Progress, learning_rate


def test_constant_is_the_configured_rate_at_every_update():
    train = TrainConfig(lr=0.003)
    assert {learning_rate(step, train, decays=3) for step in (0, 1, 10_000)} == {0.003}  # decays: plateau's


def test_inverse_sqrt_warms_up_linearly_to_the_configured_rate_then_falls_as_one_over_root_step():
    train = TrainConfig(lr=0.002, schedule="inverse_sqrt", warmup_steps=100)
    assert learning_rate(0, train) == pytest.approx(0.002 / 100)  # update 1 of 100 warm-up updates
    assert learning_rate(49, train) == 0.001  # update 50: halfway up
    assert learning_rate(99, train) == 0.002  # update 100: the peak
    assert learning_rate(399, train) == 0.001  # update 400: √(100 / 400) of the peak
    rates = [learning_rate(step, train) for step in range(1000)]
    assert max(rates) == rates[99]


def test_budget_warms_up_holds_then_falls_linearly_to_zero_over_the_last_share_of_the_updates():
    train = TrainConfig(lr=0.002, schedule="budget", warmup_steps=10, max_steps=1000, decay_share=0.2)
    assert learning_rate(4, train) == pytest.approx(0.001)  # update 5 of 10 warm-up updates
    assert learning_rate(9, train) == learning_rate(799, train) == 0.002  # held until 80 % are done
    assert learning_rate(900, train) == pytest.approx(0.001)  # halfway down the last 200
    assert learning_rate(1000, train) == 0.0
    rates = [learning_rate(step, train) for step in range(800, 1001)]
    assert rates == sorted(rates, reverse=True)


def test_budget_follows_the_clock_when_the_minutes_run_out_before_the_updates():
    train = TrainConfig(lr=0.001, schedule="budget", warmup_steps=0, max_steps=10_000, max_minutes=10)
    assert learning_rate(0, train, seconds=0.0) == 0.001  # no warm-up
    assert learning_rate(100, train, seconds=0.85 * 600) == pytest.approx(0.0005)  # 15 % of 10 minutes left
    assert learning_rate(100, train, seconds=600) == 0.0


def test_plateau_multiplies_the_configured_rate_by_the_factor_once_per_decay():
    train = TrainConfig(lr=0.004, schedule="plateau", decay_factor=0.5)
    assert [learning_rate(700, train, decays) for decays in range(4)] == [0.004, 0.002, 0.001, 0.0005]


@pytest.mark.parametrize(
    ("schedule", "saved_lr", "decays"),
    [
        ("plateau", 0.003 * 0.7 * 0.7, 2),
        ("plateau", 0.003, 0),
        ("constant", 0.003, 0),
        ("inverse_sqrt", 0.0021, 0),
    ],
)
def test_a_checkpoint_from_before_the_decay_count_resumes_at_its_rate(schedule, saved_lr, decays):
    """Checkpoints once saved the decayed rate itself; the count of decays is derived from it."""
    config = Config()
    config.train.lr, config.train.schedule, config.train.decay_factor = 0.003, schedule, 0.7
    saved = {"step": 40, "epoch": 3, "bad_validations": 2, "lr": saved_lr, "config": config.to_dict()}
    progress = Progress.from_checkpoint(saved)
    assert (progress.step, progress.epoch, progress.bad_validations, progress.decays) == (40, 3, 2, decays)
    if schedule == "plateau":
        assert learning_rate(40, config.train, progress.decays) == saved_lr  # the very same float
