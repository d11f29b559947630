"""jgan.quality and scripts/quality.py: quality against training time, with and without the PyTorch
reference; scoring off the clock; the table and the JSON agree; bad flags are one sentence."""
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from jgan import quality
from jgan.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
TINY = ["--size", "32", "--set", "train.batch=8", "--set", "model.ngf=8", "--set", "model.ndf=8",
        "--set", "train.num_workers=0", "--minutes", "0.05", "0.1", "--n", "16", "--threads", "1",
        "--no-progress"]
TINY_TORCH = ["--torch", "--torch-set", "train.batch=8", "--torch-set", "model.ngf=8",
              "--torch-set", "model.ndf=8", "--torch-set", "train.num_workers=0"]
GRID_SIDE = 2 + 8 * (32 + 2)   # 8 images of 32 px per row, 2 px apart and around


# ----- the library ---------------------------------------------------------------------------------
@pytest.mark.parametrize("minutes, message", [
    ([], "at least one time point"),
    ([5, 0], "must all be positive, got 0"),
    ([-1], "must all be positive, got -1"),
    ([10, 5], "strictly increasing, got 10 5"),
    ([5, 5], "strictly increasing, got 5 5"),
])
def test_bad_time_points_are_refused(minutes, message):
    with pytest.raises(ConfigError, match=message):
        quality.check_minutes(minutes)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeRun:
    """Each segment ends `overshoot` seconds past what it was given, one step per second."""

    def __init__(self, clock, overshoot):
        self.clock, self.overshoot = clock, overshoot
        self.given, self.steps, self.images = [], 0, 0

    def warm_up(self):
        self.clock.now += 50.0
        self.steps, self.images = 1, 4

    def train_for(self, seconds):
        self.given.append(seconds)
        self.clock.now += seconds + self.overshoot
        self.steps += int(seconds + self.overshoot)
        self.images = 4 * self.steps

    @contextmanager
    def sampler(self):
        yield "generator"


def test_scoring_and_warm_up_are_off_the_clock_and_an_overshoot_shortens_the_next_segment(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(quality.time, "perf_counter", clock)
    run = FakeRun(clock, overshoot=1.0)

    def score(generator, minutes, variant):
        clock.now += 100.0            # slow scoring must not count
        return {"size": 32, "swd": minutes}

    points = quality.measure(run, [0.1, 0.2, 0.21], score)
    assert run.given == [6.0, 5.0], run.given          # 12 s - 7 s spent; 12.6 s < 13 s spent: no segment
    assert [p.seconds for p in points] == [7.0, 13.0, 13.0]
    assert [p.steps for p in points] == [8, 14, 14]
    assert [p.images for p in points] == [32, 56, 56]
    assert [p.scores["swd"] for p in points] == [0.1, 0.2, 0.21]


class RunWithVariant(FakeRun):
    def variants(self):
        @contextmanager
        def trained():
            yield "trained generator"
        return {"no EMA": trained}


def test_variants_are_scored_at_every_point_off_the_clock_and_become_sides_of_the_table(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(quality.time, "perf_counter", clock)
    run = RunWithVariant(clock, overshoot=0.0)
    scored = []

    def score(generator, minutes, variant):
        scored.append((generator, minutes, variant))
        clock.now += 100.0
        return {"size": 32, "swd": minutes + (variant is not None)}

    points = quality.measure(run, [0.1, 0.2], score)
    assert scored == [("generator", 0.1, None), ("trained generator", 0.1, "no EMA"),
                      ("generator", 0.2, None), ("trained generator", 0.2, "no EMA")]
    assert [p.seconds for p in points] == [6.0, 12.0]
    sides = quality.variant_sides("jgan", points)
    assert list(sides) == ["jgan, no EMA"]
    assert [(p.steps, p.scores["swd"]) for p in sides["jgan, no EMA"]] == [(p.steps, p.minutes + 1) for p in points]


def point(minutes, steps, size=32, **scores):
    return quality.Point(minutes, minutes * 60, steps, steps * 8, {"size": size, **scores})


def test_table_has_one_row_per_time_point_and_a_floor_row_per_size():
    sides = {"jgan": [point(5, 100, swd_32=30.0, swd_16=10.0, swd=20.0),
                      point(10, 200, swd_32=20.0, swd_16=8.0, swd=14.0)],
             "torch": [point(5, 90, swd_32=33.0, swd_16=11.0, swd=22.0),
                       point(10, 180, swd_32=21.0, swd_16=9.0, swd=15.0)]}
    floors = {32: {"size": 32, "swd_32": 2.0, "swd_16": 1.0, "swd": 1.5}}
    lines = quality.markdown_table(sides, floors, ("swd",)).splitlines()
    assert lines[0] == ("| minutes | jgan px | jgan steps | jgan images | jgan SWD 32 | jgan SWD 16 | jgan SWD "
                        "| torch px | torch steps | torch images | torch SWD 32 | torch SWD 16 | torch SWD |")
    assert lines[2] == "| 5 | 32 | 100 | 800 | 30.0 | 10.0 | 20.0 | 32 | 90 | 720 | 33.0 | 11.0 | 22.0 |"
    assert lines[3] == "| 10 | 32 | 200 | 1600 | 20.0 | 8.0 | 14.0 | 32 | 180 | 1440 | 21.0 | 9.0 | 15.0 |"
    assert lines[4] == "| real vs real, 32 px |  |  |  | 2.0 | 1.0 | 1.5 |  |  |  | 2.0 | 1.0 | 1.5 |"
    assert len(lines) == 5


def test_a_single_side_is_not_prefixed_and_kid_is_shown_x1e3():
    sides = {"jgan": [point(1, 10, size=16, swd_16=5.0, swd=5.0, fid=80.3, kid=0.0123)]}
    lines = quality.markdown_table(sides, {16: {"size": 16, "swd_16": 1.0, "swd": 1.0, "fid": 2.0, "kid": 0.001}},
                                   ("swd", "fid", "kid")).splitlines()
    assert lines[0] == "| minutes | px | steps | images | SWD 16 | SWD | FID | KID x1e3 |"
    assert lines[2] == "| 1 | 16 | 10 | 80 | 5.0 | 5.0 | 80.3 | 12.3 |"
    assert lines[3] == "| real vs real, 16 px |  |  |  | 1.0 | 1.0 | 2.0 | 1.0 |"


# ----- the script ----------------------------------------------------------------------------------
def run_quality(*args, cwd):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "quality.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def table_rows(stdout):
    """The body rows of the Markdown table, as lists of cells."""
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]


def check_side_against_json(rows, side, first_column):
    """The side's px, steps, images and SWD cells are the JSON's numbers; steps grow."""
    points = side["points"]
    assert [row[0] for row in rows[:2]] == ["0.05", "0.1"]
    for row, record in zip(rows, points):
        px, steps, images, *scores = row[first_column:first_column + 6]
        assert (int(px), int(steps), int(images)) == (record["scores"]["size"], record["steps"], record["images"])
        assert scores == [f"{record['scores'][key]:.1f}" for key in ("swd_32", "swd_16", "swd")], (scores, record)
    assert 1 < points[0]["steps"] < points[1]["steps"], [p["steps"] for p in points]
    assert points[0]["images"] == 8 * points[0]["steps"]
    assert points[0]["seconds"] >= 3.0 and points[1]["seconds"] >= 6.0
    assert side["warmup_seconds"] > 0


def test_jgan_alone_trains_scores_and_reports(tiny_lmdb, tmp_path):
    result = run_quality(tiny_lmdb, "--arch", "dcgan", *TINY, "--json", "q.json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "python scripts/quality.py" in result.stdout and "1 thread (" in result.stdout
    rows = table_rows(result.stdout)
    assert len(rows) == 3 and rows[2][0] == "real vs real, 32 px"
    document = json.loads((tmp_path / "q.json").read_text())
    assert list(document["sides"]) == ["jgan"] and document["machine"]["threads"] == 1
    check_side_against_json(rows, document["sides"]["jgan"], 1)
    assert rows[2][4:7] == [f"{document['floor']['32'][k]:.1f}" for k in ("swd_32", "swd_16", "swd")]
    for minutes in ("0.05", "0.1"):
        with Image.open(tmp_path / "results" / "quality" / f"dcgan-{minutes}min.png") as grid:
            assert grid.size == (GRID_SIDE, GRID_SIDE)
    assert (tmp_path / "checkpoint" / "quality-dcgan" / "jgan" / "config.yaml").is_file()


def test_torch_reference_is_trained_after_jgan_and_shown_beside_it(tiny_lmdb, tmp_path):
    result = run_quality(tiny_lmdb, "--arch", "dcgan", *TINY, *TINY_TORCH, "--name", "tiny",
                         "--json", "q.json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table_rows(result.stdout)
    header = next(line for line in result.stdout.splitlines() if line.startswith("| minutes"))
    assert header.split(" | ")[1:3] == ["jgan px", "jgan steps"] and "torch SWD" in header
    document = json.loads((tmp_path / "q.json").read_text())
    jgan_side, torch_side = document["sides"]["jgan"], document["sides"]["torch"]
    check_side_against_json(rows, jgan_side, 1)
    check_side_against_json(rows, torch_side, 7)
    assert torch_side["threads"] == 1
    model = torch_side["config"]["model"]
    assert (model["size"], model["nz"], model["ngf"], model["ndf"]) == (32, 100, 8, 8)
    assert torch_side["config"]["optim"]["betas"] == [0.5, 0.999] and torch_side["config"]["loss"]["name"] == "bce"
    assert (tmp_path / "checkpoint" / "quality-tiny" / "torch" / "latest.pt").is_file()
    with Image.open(tmp_path / "results" / "quality" / "torch-dcgan-0.1min.png") as grid:
        assert grid.size == (GRID_SIDE, GRID_SIDE)


@pytest.mark.parametrize("args, message", [
    (["--minutes", "10", "5"], "--minutes must be strictly increasing, got 10 5"),
    (["--minutes", "0"], "--minutes must all be positive"),
    (["--arch", "biggan"], "unknown architecture 'biggan'"),
    (["--torch-set", "model.ngf=8"], "add --torch or drop it"),
    (["--size", "32", "--torch", "--torch-set", "model.size=64"], "has no 64 px images"),
])
def test_bad_flags_are_one_sentence(args, message, tiny_lmdb, tmp_path):
    result = run_quality(tiny_lmdb, *args, "--n", "16", "--no-progress", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "checkpoint").exists()


def test_a_missing_lmdb_is_one_sentence(tmp_path):
    result = run_quality(tmp_path / "nowhere", cwd=tmp_path)
    assert result.returncode == 2 and "nowhere does not exist; create it with" in result.stderr, result.stderr


def test_an_earlier_run_is_not_overwritten(tiny_lmdb, tmp_path):
    earlier = tmp_path / "checkpoint" / "quality-dcgan" / "jgan" / "0000001.jgan"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"earlier")
    result = run_quality(tiny_lmdb, "--arch", "dcgan", *TINY, cwd=tmp_path)
    assert result.returncode == 2 and "already holds a run; delete it" in result.stderr, result.stderr
    assert earlier.read_bytes() == b"earlier"


def test_the_nan_policy_reaches_the_jgan_trainer(monkeypatch, tmp_path):
    import importlib.util

    import jgan.training
    spec = importlib.util.spec_from_file_location("quality_script", REPO / "scripts" / "quality.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    policies = []

    class Stop(Exception):
        pass

    def recording_trainer(*args, nan_policy="stop", **kwargs):
        policies.append(nan_policy)
        raise Stop

    monkeypatch.setattr(jgan.training, "Trainer", recording_trainer)
    for flags, policy in (([], "stop"), (["--nan-policy", "skip"], "skip")):
        args = script.build_parser().parse_args(["lmdb", *flags])
        with pytest.raises(Stop):
            script.measure_jgan(args, {}, "dcgan", tmp_path, scorer=None)
    assert policies == ["stop", "skip"]
