"""Quality against wall-clock time: a run is trained in segments up to each time point and its
generator is scored between segments, off the clock (scripts/quality.py).

A run is anything with `warm_up()` (one first step, not timed: Jittor compiles its kernels
there), `train_for(seconds)` (continues where it stopped), `steps`, `images` and `sampler()`
(a context manager giving an object that jgan.metrics can score: `latent_dim`, `size`, and
`__call__(z)` returning images with `.numpy()`). A run may also have `variants()`: {label:
sampler} of other generators of the same training, scored at the same points (e.g. the trained
generator beside its EMA, which costs no training time). Importing this module imports no Jittor.
"""
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from jgan.errors import ConfigError

UNLIMITED_STEPS = 10 ** 9   # a run stopped by the clock only


def check_minutes(minutes):
    """The time points, checked: at least one, each positive, strictly increasing."""
    if not minutes:
        raise ConfigError("--minutes needs at least one time point, e.g. --minutes 5 10 20 30")
    bad = next((m for m in minutes if not m > 0), None)
    if bad is not None:
        raise ConfigError(f"--minutes must all be positive, got {bad:g}; pass training times in minutes")
    if any(later <= earlier for earlier, later in zip(minutes, minutes[1:])):
        given = " ".join(f"{m:g}" for m in minutes)
        raise ConfigError(f"--minutes must be strictly increasing, got {given}; list the time points in order")
    return list(minutes)


@dataclass
class Point:
    """A run at one time point: training time spent (the last step ends past the point, and a
    later segment is shortened by as much), steps and images shown, and the metrics' result."""
    minutes: float
    seconds: float
    steps: int
    images: int
    scores: dict
    variants: dict = field(default_factory=dict)   # label -> scores of another generator of the run


def measure(run, minutes, score):
    """Points of `run` at each time point (minutes of training, after the untimed warm-up step);
    `score(generator, minutes, label)` -> the metrics' dict (label None for the run's own
    generator, else the variant's), called between segments, off the clock."""
    run.warm_up()
    points, spent = [], 0.0
    for target in check_minutes(minutes):
        remaining = target * 60 - spent
        if remaining > 0:
            started = time.perf_counter()
            run.train_for(remaining)
            spent += time.perf_counter() - started
        with run.sampler() as generator:
            point = Point(target, round(spent, 2), run.steps, run.images, score(generator, target, None))
        for label, sampler in getattr(run, "variants", dict)().items():
            with sampler() as generator:
                point.variants[label] = score(generator, target, label)
        points.append(point)
    return points


class JganRun:
    """A jgan Trainer trained in timed segments; scored with its sampling generator (the EMA one
    when the configuration keeps one) in evaluation mode, as the Trainer's own metrics are, and
    with an EMA, also with the trained generator (variant "no EMA")."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.warmup_seconds = None

    @property
    def steps(self):
        return self.trainer.step

    @property
    def images(self):
        return self.trainer.images

    def warm_up(self):
        """One step and its sample grid: the kernels of both are compiled (or loaded) here."""
        started = time.perf_counter()
        self.trainer.train(self.trainer.step + 1)
        self.warmup_seconds = round(time.perf_counter() - started, 2)

    def train_for(self, seconds):
        return self.trainer.train(UNLIMITED_STEPS, seconds)

    def sampler(self):
        return self.sampling(self.trainer.model.sampling_generator())

    def variants(self):
        """The trained generator beside the EMA one, when the run keeps an EMA."""
        model = self.trainer.model
        trained = model.modules()[model.sampling_modules[-1]]
        if trained is model.sampling_generator():
            return {}
        return {"no EMA": lambda: self.sampling(trained)}

    @contextmanager
    def sampling(self, generator):
        from jgan.generation import TrainedGenerator
        from jgan.models.base import evaluation_mode
        trainer = self.trainer
        phase = trainer.schedule.phase(trainer.images)
        with evaluation_mode(generator) as module:
            yield TrainedGenerator(module, trainer.arch.name,
                                   trainer.arch.latent_size(trainer.config["model"]), phase.level,
                                   trainer.model.network_inputs(phase).get("alpha", 1.0))


# ----- the report ---------------------------------------------------------------------------------
def variant_sides(name, points):
    """{f"{name}, {label}": points} of each variant scored at `points`, as sides of the table."""
    labels = list(points[0].variants) if points else []
    return {f"{name}, {label}": [Point(p.minutes, p.seconds, p.steps, p.images, p.variants[label]) for p in points]
            for label in labels}


def swd_levels(results):
    """The per-level SWD keys of metric results, largest resolution first (swd_64, swd_32, ...)."""
    keys = {key for result in results for key in result if key.startswith("swd_") and key[4:].isdigit()}
    return sorted(keys, key=lambda key: -int(key[4:]))


def score_columns(results, metrics):
    """(title, key, scale) of each score column: SWD per level and averaged, FID, KID x1e3."""
    columns = [(f"SWD {key[4:]}", key, 1.0) for key in swd_levels(results)] + [("SWD", "swd", 1.0)]
    if "fid" in metrics:
        columns.append(("FID", "fid", 1.0))
    if "kid" in metrics:
        columns.append(("KID x1e3", "kid", 1e3))
    return columns


def cell(value, scale=1.0):
    return "" if value is None else f"{value * scale:.1f}"


def markdown_table(sides, floors, metrics):
    """Rows: the time points, then the real-vs-real floor at each image size. Columns, per side
    ({name: [Point]}; named only when there are several): px, steps, images shown, scores."""
    named = len(sides) > 1
    columns = {side: score_columns([p.scores for p in points] + list(floors.values()), metrics)
               for side, points in sides.items()}
    titles = ["minutes"]
    for side in sides:
        prefix = f"{side} " if named else ""
        titles += [f"{prefix}{title}" for title in ("px", "steps", "images")]
        titles += [f"{prefix}{title}" for title, _, _ in columns[side]]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for index, first in enumerate(next(iter(sides.values()))):
        cells = [f"{first.minutes:g}"]
        for side, points in sides.items():
            point = points[index]
            cells += [str(point.scores["size"]), str(point.steps), str(point.images)]
            cells += [cell(point.scores.get(key), scale) for _, key, scale in columns[side]]
        lines.append("| " + " | ".join(cells) + " |")
    for size, floor in sorted(floors.items()):
        cells = [f"real vs real, {size} px"]
        for side in sides:
            cells += ["", "", ""] + [cell(floor.get(key), scale) for _, key, scale in columns[side]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform module says."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads):
    return {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "threads": threads}
