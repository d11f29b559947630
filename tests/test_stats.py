"""The run's one statistics sink: log.jsonl, metrics.jsonl, plots, sample grids and the same values
read back as TensorBoard shows them."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jgan.stats import RunStats


def step_record(step, d_loss):
    """A generator step's record, keys in the order the training loop writes them."""
    return {"step": step, "images": 8 * step, "size": 16, "alpha": 0.5, "d_loss": d_loss,
            "g_loss": -d_loss, "gp": 0.1 * step, "seconds": 0.5 * step}


def tensorboard_view(run_dir):
    """The run's events as TensorBoard loads them (every event kept, restarts purged)."""
    accumulator = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def curves(accumulator):
    """{scalar tag: [(step, value), ...]}."""
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


@pytest.fixture
def grid():
    """A 10x14 HWC uint8 image whose every pixel differs from its neighbours."""
    return (np.arange(10 * 14 * 3).reshape(10, 14, 3) * 7 % 256).astype(np.uint8)


def test_three_steps_and_a_grid_read_back_from_the_event_file_with_their_tags_steps_and_values(tmp_path, grid):
    with RunStats(tmp_path / "run", tmp_path / "samples") as stats:
        for step in (1, 2, 3):
            stats.log_step(step_record(step, d_loss=1.0 / step))
        stats.log_samples(3, grid)
    view = tensorboard_view(tmp_path / "run")
    expected = {
        "Loss/d_loss": [(1, 1.0), (2, 0.5), (3, 1 / 3)],
        "Loss/g_loss": [(1, -1.0), (2, -0.5), (3, -1 / 3)],
        "Loss/gp": [(1, 0.1), (2, 0.2), (3, 0.3)],
        "Progress/images": [(1, 8), (2, 16), (3, 24)],
        "Progress/resolution": [(1, 16), (2, 16), (3, 16)],
        "Progress/alpha": [(1, 0.5), (2, 0.5), (3, 0.5)],
        "Progress/seconds": [(1, 0.5), (2, 1.0), (3, 1.5)],
        "Progress/images_per_second": [(2, 16.0), (3, 16.0)],  # none at the process's first line
    }
    found = curves(view)
    assert sorted(found) == sorted(expected)
    for tag, points in expected.items():
        assert [step for step, _ in found[tag]] == [step for step, _ in points], tag
        assert [value for _, value in found[tag]] == pytest.approx([value for _, value in points]), tag
    [image] = view.Images("Samples/fixed_z")
    assert (image.step, image.width, image.height) == (3, 14, 10)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string))), grid)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "samples" / "0000003.png")), grid)


def test_log_jsonl_holds_each_record_as_one_line_as_soon_as_it_is_logged(tmp_path):
    records = [step_record(1, 0.9), {**step_record(2, 0.8), "skipped": 1}]
    stats = RunStats(tmp_path / "run", tmp_path / "samples")
    for count, record in enumerate(records, start=1):
        stats.log_step(record)
        written = (tmp_path / "run" / "log.jsonl").read_text()
        assert written == "".join(json.dumps(r) + "\n" for r in records[:count])  # before flush or close
    stats.close()
    assert curves(tensorboard_view(tmp_path / "run"))["Progress/skipped_steps"] == [(2, 1)]


def test_a_loss_plot_before_the_first_log_line_draws_an_empty_plot(tmp_path):
    stats = RunStats(tmp_path / "run", tmp_path / "samples")
    stats.plot_losses()
    with Image.open(tmp_path / "run" / "loss.png") as image:
        assert image.size == (800, 480)
    stats.log_step(step_record(1, 0.9))
    stats.plot_losses()
    stats.close()


def test_metrics_go_to_metrics_jsonl_metrics_png_and_tensorboard_without_their_bookkeeping(tmp_path):
    record = {"step": 4, "images": 32, "size": 16, "n_real": 24, "n_fake": 24, "swd_16": 0.25, "swd": 0.5,
              "swd_images": 24, "swd_seconds": 1.5, "fid": 41.0}
    with RunStats(tmp_path / "run", tmp_path / "samples") as stats:
        stats.log_metrics(record)
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert line == {"time": line["time"], **record}
    assert (tmp_path / "run" / "metrics.png").is_file()
    assert curves(tensorboard_view(tmp_path / "run")) == {
        "Metrics/swd_16": [(4, 0.25)], "Metrics/swd": [(4, 0.5)], "Metrics/fid": [(4, 41.0)]}


def test_a_disabled_sink_writes_nothing_and_creates_no_folder(tmp_path, grid):
    with RunStats(tmp_path / "run", tmp_path / "samples", enabled=False) as stats:
        stats.log_step(step_record(1, 0.9))
        assert stats.log_samples(1, grid) is None
        stats.log_metrics({"step": 1, "images": 8, "fid": 40.0})
        stats.plot_losses()
        stats.flush()
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_run_replaces_the_events_written_after_its_checkpoint(tmp_path, grid):
    """The first process logs steps 1-5 and dies after the checkpoint at step 3; the resumed one
    logs steps 4-6 again: TensorBoard shows each step once, the later value, in every tag."""
    with RunStats(tmp_path / "run", tmp_path / "samples") as first:
        for step in (1, 2, 3, 4, 5):
            first.log_step(step_record(step, d_loss=1.0))
            if step in (2, 5):
                first.log_metrics({"step": step, "images": 8 * step, "fid": float(step)})
                first.log_samples(step, grid)
    with RunStats(tmp_path / "run", tmp_path / "samples", start_step=3) as resumed:
        for step in (4, 5, 6):
            resumed.log_step(step_record(step, d_loss=2.0))
    view = tensorboard_view(tmp_path / "run")
    found = curves(view)
    assert found["Loss/d_loss"] == [(1, 1.0), (2, 1.0), (3, 1.0), (4, 2.0), (5, 2.0), (6, 2.0)]
    assert found["Metrics/fid"] == [(2, 2.0)]
    assert [image.step for image in view.Images("Samples/fixed_z")] == [2]


def test_a_sink_used_again_after_close_keeps_the_events_it_wrote_before(tmp_path):
    stats = RunStats(tmp_path / "run", tmp_path / "samples")
    for step in (1, 2):
        stats.log_step(step_record(step, d_loss=1.0))
    stats.close()
    stats.log_step(step_record(3, d_loss=1.0))
    stats.close()
    assert [step for step, _ in curves(tensorboard_view(tmp_path / "run"))["Loss/d_loss"]] == [1, 2, 3]


def test_importing_the_sink_leaves_pytorch_unloaded_and_importable():
    """tensorboardX would import an installed PyTorch (requirements-test.txt installs it)."""
    code = "import sys, jgan.stats; print('torch' in sys.modules); import torch; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.stdout.split() == ["False", "True"], result.stderr
