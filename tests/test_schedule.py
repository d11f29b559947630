"""Progressive growing as a pure function of the images shown."""
import pytest

from jgan.errors import ConfigError
from jgan.schedule import FixedSchedule, ProgressiveSchedule


def progressive(**kwargs):
    settings = dict(init_size=8, max_size=32, phase_images=100, batch_by_size={8: 10, 16: 5, 32: 4},
                    lr_by_size={32: 0.002})
    settings.update(kwargs)
    return ProgressiveSchedule(**settings)


def test_first_resolution_is_fully_grown_for_two_phases():
    schedule = progressive()
    for images in (0, 99, 199):
        phase = schedule.phase(images)
        assert (phase.size, phase.level, phase.alpha, phase.batch) == (8, 1, 1.0, 10)
        assert not phase.fading


def test_next_resolution_fades_in_over_one_phase_then_holds():
    schedule = progressive()
    assert schedule.phase(200).size == 16
    assert schedule.phase(200).alpha == pytest.approx(1 / 100)
    assert schedule.phase(249).alpha == pytest.approx(0.5)
    assert schedule.phase(249).fading
    assert schedule.phase(299).alpha == 1.0
    assert schedule.phase(350).alpha == 1.0 and not schedule.phase(350).fading
    assert schedule.phase(350).batch == 5 and schedule.phase(350).level == 2


def test_last_resolution_holds_forever_with_its_learning_rate():
    schedule = progressive()
    phase = schedule.phase(10 ** 7)
    assert (phase.size, phase.alpha, phase.batch, phase.lr, phase.index) == (32, 1.0, 4, 0.002, 2)
    assert schedule.phase(0).lr is None, "no progressive.lr at 8 px: each network keeps its own"


def test_fixed_batch_overrides_the_schedule():
    schedule = progressive(fixed_batch=3)
    assert {schedule.phase(i).batch for i in (0, 250, 10 ** 6)} == {3}


def test_bad_sizes_are_sentences():
    with pytest.raises(ConfigError, match="power of two"):
        progressive(max_size=48)
    with pytest.raises(ConfigError, match="larger than --max-size"):
        progressive(init_size=64)
    with pytest.raises(ConfigError, match="no batch size for 32 px"):
        progressive(batch_by_size={8: 1, 16: 1})
    with pytest.raises(ConfigError, match="power of two"):
        FixedSchedule(size=30, batch=4)


def test_fixed_schedule_never_changes():
    schedule = FixedSchedule(size=32, batch=8)
    assert schedule.phase(0) == schedule.phase(10 ** 9)
    assert schedule.phase(0).level == 3


def test_stages_change_the_batch_and_learning_rate_from_their_images_on_and_keep_what_they_leave_out():
    stages = [{"images": 100, "lr": 5e-5, "batch": None}, {"images": 300, "lr": None, "batch": 64}]
    schedule = FixedSchedule(size=64, batch=32, stages=stages)
    before, first, second = schedule.phase(99), schedule.phase(100), schedule.phase(10 ** 9)
    assert (before.batch, before.lr, before.index) == (32, None, 0)     # the configured lr and batch
    assert (first.batch, first.lr, first.index) == (32, 5e-5, 1)
    assert (schedule.phase(299).batch, second.batch, second.lr, second.index) == (32, 64, 5e-5, 2)
    assert schedule.phases() == [before, first, second]


def test_stages_replace_a_progressive_runs_batch_and_learning_rate_at_every_resolution_after_them():
    stages = [{"images": 250, "lr": 1e-4, "batch": None}, {"images": 450, "lr": None, "batch": 16}]
    schedule = progressive(stages=stages)
    before, fading, grown = schedule.phase(249), schedule.phase(250), schedule.phase(10 ** 7)
    assert (before.size, before.batch, before.lr, before.index) == (16, 5, None, 1)
    assert (fading.size, fading.alpha, fading.batch, fading.lr, fading.index) == (16, 0.51, 5, 1e-4, 2)
    assert (grown.size, grown.batch, grown.lr, grown.index) == (32, 16, 1e-4, 4), \
        "the stage's lr wins over progressive.lr at 32 px, and the later stage's batch over its batch"
    assert schedule.phase(449).batch == 4 and schedule.phase(450).index == 4
    assert [(p.size, p.index) for p in schedule.phases()] == [(8, 0), (16, 1), (16, 2), (32, 3), (32, 4)]
    assert progressive().phase(10 ** 7).index == 2, "without stages, the index counts resolutions"
