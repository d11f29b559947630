"""Where a training run's time goes: seconds and counts of named parts of the loop.

The loop (jgan.training.Trainer) asks `current()` for this process's stopwatch when it is built. That
is `IDLE`, which times nothing (a shared no-op context, the iterator itself), unless a benchmark
installed a `Stopwatch` first; scripts/bench.py --e2e does, then calls train.py's main:

    watch = stopwatch.install(stopwatch.Stopwatch())
    ...                                  # train
    watch.totals()   # {"data_wait": {"seconds": 1.9, "count": 40}, "checkpoint": {...}, ...}

Parts the loop names: step (one training step, data wait and host syncs included), data_wait (inside
`next()` of a data stream), host_sync (reading a loss on the host to check it is finite: in a lazy
framework this waits for the computation the loss needs), log, sample, metrics, checkpoint.
"""
import time
from contextlib import contextmanager, nullcontext


class Stopwatch:
    """Accumulates the seconds and the number of entries of each named part."""

    def __init__(self, clock=time.perf_counter):
        self.clock, self.seconds, self.counts = clock, {}, {}

    def add(self, name, seconds):
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    @contextmanager
    def section(self, name):
        """Times the `with` block as one entry of `name`."""
        started = self.clock()
        try:
            yield
        finally:
            self.add(name, self.clock() - started)

    def timed(self, name, iterator):
        """The items of `iterator`, each `next()` timed as one entry of `name`."""
        iterator = iter(iterator)
        while True:
            started = self.clock()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.add(name, self.clock() - started)
            yield item

    def totals(self):
        return {name: {"seconds": self.seconds[name], "count": self.counts[name]} for name in self.seconds}


class Idle:
    """The stopwatch of a run nobody times: no clock read, no wrapper."""
    _NOTHING = nullcontext()

    def section(self, name):
        return self._NOTHING

    def timed(self, name, iterator):
        return iterator

    def totals(self):
        return {}


IDLE = Idle()
_installed = IDLE


def install(stopwatch):
    """Make `stopwatch` the one the Trainers built from now on in this process use; returns it."""
    global _installed
    _installed = stopwatch
    return stopwatch


def current():
    return _installed
