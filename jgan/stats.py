"""One sink for a run's statistics: the JSON-lines logs and their plots, the sample grids, and the
same values as TensorBoard events under `tb/`, so that `tensorboard --logdir checkpoint` shows
every run.

    with RunStats(run_dir, sample_dir, enabled=is_main_process(), start_step=step) as stats:
        stats.log_step({"step": 10, "images": 640, "size": 32, "alpha": 1.0, "d_loss": 0.3, "seconds": 4.2})
        stats.log_samples(10, grid)        # HWC uint8
        stats.plot_losses()
        stats.log_metrics({"step": 10, "images": 640, "fid": 41.0})
        stats.flush()                      # after each checkpoint
"""
import json
import sys
import time
import warnings
from pathlib import Path

from jgan.visual import is_curve, plot_log, save_image

LOSS_LOG = "log.jsonl"
METRICS_LOG = "metrics.jsonl"
TENSORBOARD_FOLDER = "tb"
FLUSH_SECONDS = 30  # how stale TensorBoard may be while a run trains
PROGRESS_TAGS = {"images": "Progress/images", "size": "Progress/resolution", "alpha": "Progress/alpha",
                 "seconds": "Progress/seconds", "skipped": "Progress/skipped_steps"}
IMAGES_PER_SECOND_TAG = "Progress/images_per_second"
SAMPLES_TAG = "Samples/fixed_z"


def import_summary_writer():
    """tensorboardX's SummaryWriter, imported with PyTorch hidden: tensorboardX imports an installed
    PyTorch only to name its tensor type, and PyTorch next to Jittor needs runtime.import_torch
    (and costs every run ~185 MiB)."""
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # `import torch` raises ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter


SummaryWriter = import_summary_writer()


def append_record(run_dir, record):
    """Appends `record` (with the UTC time) as one JSON line to the run's metrics.jsonl; returns its path."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    path = Path(run_dir) / METRICS_LOG
    with open(path, "a") as stream:
        stream.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}) + "\n")
    return path


class RunStats:
    """Every statistic of one run; with enabled=False (MPI ranks other than 0) it writes nothing.

    start_step is the step the run starts from (the checkpoint's step on resume): TensorBoard
    forgets the events an earlier process wrote after it, which this process writes again.
    """

    def __init__(self, run_dir, sample_dir, enabled=True, start_step=0):
        self.run_dir, self.sample_dir = Path(run_dir), Path(sample_dir)
        self.enabled = enabled
        self._purge_step = start_step + 1
        self._log = None
        self._writer = None
        self._previous_progress = None

    def log_step(self, record):
        """A generator step's record as one line of log.jsonl and as TensorBoard scalars at its
        "step": loss terms under Loss/, "images", "size", "alpha", "seconds" and "skipped" (and the
        images per second since the previous record) under Progress/."""
        if not self.enabled:
            return
        self._loss_log().write(json.dumps(record) + "\n")
        step = record["step"]
        writer = self._tensorboard()
        for key, value in record.items():
            if key != "step":
                writer.add_scalar(PROGRESS_TAGS.get(key, f"Loss/{key}"), value, step)
        rate = self._images_per_second(record)
        if rate is not None:
            writer.add_scalar(IMAGES_PER_SECOND_TAG, rate, step)

    def log_samples(self, step, grid):
        """The fixed-latent sample grid (HWC uint8) as sample_dir/STEP.png and a TensorBoard image;
        returns the PNG's path."""
        if not self.enabled:
            return None
        self._tensorboard().add_image(SAMPLES_TAG, grid, step, dataformats="HWC")
        return save_image(grid, self.sample_dir / f"{step:07d}.png")

    def log_metrics(self, record):
        """An evaluation ("step", "images", metric values...) as a line of metrics.jsonl, a redrawn
        metrics.png, and its quality values as TensorBoard scalars under Metrics/."""
        if not self.enabled:
            return
        path = append_record(self.run_dir, record)
        plot_log(path, self.run_dir / "metrics.png")
        writer = self._tensorboard()
        for key, value in record.items():
            if key != "step" and is_curve(key, value):
                writer.add_scalar(f"Metrics/{key}", value, record["step"])

    def plot_losses(self):
        """Redraws loss.png from log.jsonl ("no data yet" before its first line)."""
        if self.enabled:
            plot_log(self.run_dir / LOSS_LOG, self.run_dir / "loss.png")

    def flush(self):
        """Writes out the TensorBoard events; after each checkpoint, so that a crash loses only events
        the resumed run writes again (tensorboardX's flush does not wait for the few events its
        writer thread has not taken from its queue yet; close() does)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        """Writes every pending event and closes the files. A disk that fails here (full) costs a
        warning, not the run's own error: the events are a view of log.jsonl and the checkpoints."""
        writer, self._writer = self._writer, None
        log, self._log = self._log, None
        try:
            if writer is not None:
                writer.close()
            if log is not None:
                log.close()
        except OSError as error:
            warnings.warn(f"jgan: the statistics of {self.run_dir} could not all be written "
                          f"({error.strerror or error})", stacklevel=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _loss_log(self):
        """log.jsonl, opened once and line-buffered: each record reaches the file as it is written."""
        if self._log is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._log = open(self.run_dir / LOSS_LOG, "a", buffering=1)
        return self._log

    def _tensorboard(self):
        """The event writer, made at the first event so that an unused RunStats creates no file."""
        if self._writer is None:
            # tensorboardX names event files by the second; the suffix keeps two files of one
            # second apart and in the order they were made.
            self._writer = SummaryWriter(str(self.run_dir / TENSORBOARD_FOLDER), purge_step=self._purge_step,
                                         flush_secs=FLUSH_SECONDS, filename_suffix=f".{time.time_ns()}")
            self._purge_step = None  # a writer reopened after close() keeps this process's events
        return self._writer

    def _images_per_second(self, record):
        """Training speed since this process's previous log line; None at its first."""
        previous, self._previous_progress = self._previous_progress, (record["images"], record["seconds"])
        if previous is None or record["seconds"] <= previous[1]:
            return None
        return (record["images"] - previous[0]) / (record["seconds"] - previous[1])
