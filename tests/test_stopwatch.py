"""jgan.stopwatch and the Trainer's use of it: what a benchmark reads of where a run's time goes."""
import pytest

from jgan import stopwatch
from jgan.config import load_config
from jgan.training import Trainer


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_sections_and_timed_iterators_add_up_seconds_and_entries():
    clock = FakeClock()
    watch = stopwatch.Stopwatch(clock)
    for seconds in (1.0, 2.5):
        with watch.section("log"):
            clock.now += seconds

    def slow(items):
        for item in items:
            clock.now += 0.25
            yield item

    assert list(watch.timed("data_wait", slow("abc"))) == list("abc")
    assert watch.totals() == {"log": {"seconds": 3.5, "count": 2}, "data_wait": {"seconds": 0.75, "count": 3}}


def test_idle_times_nothing_and_hands_the_iterator_back():
    items = iter([1, 2])
    assert stopwatch.IDLE.timed("data_wait", items) is items
    with stopwatch.IDLE.section("log"):
        pass
    assert stopwatch.IDLE.totals() == {}


@pytest.fixture
def installed():
    watch = stopwatch.install(stopwatch.Stopwatch())
    yield watch
    stopwatch.install(stopwatch.IDLE)


def test_a_trainer_times_its_parts_at_its_cadence(tiny_lmdb, tmp_path, installed):
    """4 steps of a tiny DCGAN, logs every 2, a grid and a checkpoint at the last step: one data wait
    and two host syncs (the critic's and the generator's loss) per step."""
    config = load_config("dcgan", False, None, [{
        "model": {"size": 16, "nz": 8, "ngf": 8, "ndf": 8},
        "train": {"batch": 4, "num_workers": 0, "n_sample": 4, "log_every": 2, "sample_every": 100,
                  "ckpt_every": 100}}])
    Trainer(config, tiny_lmdb, tmp_path / "run", tmp_path / "sample", progress=False).train(4)
    counts = {name: part["count"] for name, part in installed.totals().items()}
    assert counts == {"step": 4, "data_wait": 4, "host_sync": 8, "log": 2, "sample": 1, "checkpoint": 1}, counts
    parts = installed.totals()
    assert parts["data_wait"]["seconds"] <= parts["step"]["seconds"], "a data wait is part of its step"


def test_a_trainer_built_without_a_benchmark_uses_idle(tiny_lmdb, tmp_path):
    config = load_config("dcgan", False, None, [{"model": {"size": 16, "nz": 8, "ngf": 8, "ndf": 8},
                                                 "train": {"batch": 4, "num_workers": 0}}])
    trainer = Trainer(config, tiny_lmdb, tmp_path / "run", tmp_path / "sample", progress=False)
    assert trainer.stopwatch is stopwatch.IDLE
