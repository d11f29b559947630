"""scripts/bench.py: one tiny WGAN-GP row runs in both frameworks and is written as the JSON schema
promises (times are only checked to be positive: timings are not specifications); --e2e's
arithmetic on a fake clock, its table, its flag checks and the PyTorch loop it compares with."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
FIELDS = {"arch": str, "size": int, "batch": int, "n_critic": int, "threads": int, "device": str,
          "jgan_s": float, "torch_s": float, "speedup": float, "jgan_warmup_s": float,
          "recompiles": int, "kernels_compiled": int, "jgan_peak_mb": float, "torch_peak_mb": float}


def test_a_tiny_row_writes_the_json_schema(tmp_path):
    out = tmp_path / "out.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--archs", "wgan-gp", "--sizes", "32",
                             "--batch", "2", "--repeats", "1", "--warmup", "1", "--check", "1",
                             "--tiny", "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"bench.py exited with {result.returncode}:\n{result.stderr[-2000:]}"
    assert "wgan-gp" in result.stdout, f"no table row on stdout:\n{result.stdout}"
    rows = json.loads(out.read_text())
    assert len(rows) == 1, f"expected one row, got {len(rows)}"
    row = rows[0]
    for field, kind in FIELDS.items():
        assert isinstance(row.get(field), kind), f"{field} is {row.get(field)!r}, not a {kind.__name__}"
    assert (row["arch"], row["size"], row["batch"], row["n_critic"]) == ("wgan-gp", 32, 2, 5)
    for field in ("jgan_s", "torch_s", "jgan_peak_mb", "torch_peak_mb"):
        assert row[field] > 0, f"{field} is {row[field]}, not positive"
    assert abs(row["speedup"] - row["torch_s"] / row["jgan_s"]) <= 1e-9 * row["speedup"], (
        f"speedup {row['speedup']} is not torch_s / jgan_s = {row['torch_s'] / row['jgan_s']}")
    assert row["recompiles"] >= 0


# ----- --e2e ------------------------------------------------------------------------------------
def bench_module():
    """scripts/bench.py as a module (its parent side imports neither framework)."""
    spec = importlib.util.spec_from_file_location("bench_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = bench_module()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_run(clock, steps, startup, per_step, parts_per_step):
    """A run that costs `startup` plus `per_step` a step on the fake clock, and reports parts that
    grow the same way (a start-up share of 1 s each)."""
    def launch(n):
        clock.now += startup + n * per_step
        return {name: {"seconds": 1.0 + n * seconds, "count": 2 + n * count}
                for name, (seconds, count) in parts_per_step.items()}
    return bench.timed_run(launch, steps, clock)


@pytest.mark.parametrize("flags, dcgan_rows", [
    (["--quick"], [("dcgan", 32, 8), ("dcgan", 64, 64)]),         # the DCGAN preset row too
    (["--quick", "--sizes", "32"], [("dcgan", 32, 8)]),           # the user's sizes only
    (["--quick", "--batch", "4"], [("dcgan", 32, 4)]),            # the user's batch only
    (["--quick", "--archs", "stylegan"], []),
    ([], [("dcgan", 32, None), ("dcgan", 64, None)]),             # without --quick: every size at the preset's batch
])
def test_the_rows_of_the_iteration_table(flags, dcgan_rows):
    args = bench.build_parser().parse_args(flags)
    bench.iteration_defaults(args)
    assert [row for row in bench.rows_of(args) if row[0] == "dcgan"] == dcgan_rows


def test_the_difference_of_two_run_lengths_removes_start_up():
    clock = FakeClock()
    short = fake_run(clock, 5, startup=30.0, per_step=0.5, parts_per_step={})
    long = fake_run(clock, 15, startup=30.0, per_step=0.5, parts_per_step={})
    assert (short["seconds"], long["seconds"]) == (32.5, 37.5)
    per_step, fixed = bench.run_length_difference(short, long)
    assert per_step == pytest.approx(0.5) and fixed == pytest.approx(30.0), (per_step, fixed)


def test_a_side_reports_images_per_second_and_its_parts_per_step():
    clock = FakeClock()
    parts = {"data_wait": (0.004, 1), "host_sync": (0.1, 2), "log": (0.002, 0.1),
             "sample": (0.0, 0), "checkpoint": (0.0, 0)}
    short, long = (fake_run(clock, n, 20.0, 0.25, parts) for n in (10, 40))
    side = bench.side_summary(short, long, batch=64, train={"sample_every": 500, "ckpt_every": 2000})
    assert side["images_per_s"] == pytest.approx(64 / 0.25)
    assert side["fixed_s"] == pytest.approx(20.0)
    assert side["data_wait_ms"] == pytest.approx(4.0) and side["host_sync_ms"] == pytest.approx(100.0)
    assert side["host_syncs_per_step"] == pytest.approx(2.0) and side["log_ms"] == pytest.approx(2.0)
    assert side["sample_s"] == pytest.approx(0.5), "seconds per grid: the long run's 1 s over its 2 grids"
    assert side["sample_ms_at_default"] == pytest.approx(1.0), "0.5 s spread over 500 steps"


def test_speedup_is_the_reference_time_over_jgan_time_and_the_table_has_its_columns():
    clock = FakeClock()
    runs = {"jgan": {n: [fake_run(clock, n, 10.0, 0.2, {})] for n in (5, 15)},
            "torch": {n: [fake_run(clock, n, 5.0, 0.3, {})] for n in (5, 15)}}
    plan = {"arch": "dcgan", "size": 64, "batch": 64, "device": "cpu", "precision": "fp32",
            "config": {"train": {"sample_every": 500, "ckpt_every": 2000}}}
    row = bench.e2e_summary(plan, runs, threads=2)
    assert row["speedup"] == pytest.approx(1.5) and row["steps"] == "5/15"
    titles = bench.header(bench.E2E_COLUMNS).split()
    for title in ("img/s", "speedup", "fixed", "data", "syncs", "sync", "log", "sample", "ckpt"):
        assert title in titles, f"no {title!r} column in {titles}"
    jgan_line, torch_line = bench.e2e_lines(row)
    assert jgan_line.split()[:5] == ["dcgan", "64", "64", "5/15", "jgan"] and torch_line.split()[4] == "torch"
    assert float(jgan_line.split()[5]) == pytest.approx(320.0, abs=0.1), jgan_line
    assert torch_line.split()[6] == "-", f"the speedup belongs on jgan's line only: {torch_line}"
    assert len(jgan_line) == len(torch_line) == len(bench.header(bench.E2E_COLUMNS))


def test_each_side_runs_untimed_once_before_the_timed_runs(monkeypatch):
    """On a fresh machine jgan's first run compiles its kernels: that run must not be a timed one."""
    calls = []

    def fake_launcher(side, plan, folder, args):
        def launch(steps):
            calls.append((side, steps))
            return {}
        return launch

    monkeypatch.setattr(bench, "e2e_launcher", fake_launcher)
    monkeypatch.setattr(bench, "e2e_plan", lambda arch, args, device: {
        "arch": arch, "size": 64, "batch": 64, "device": "cpu", "precision": "fp32",
        "config": {"train": {"sample_every": 500, "ckpt_every": 2000}}})
    args = bench.build_parser().parse_args(["--e2e"])
    args.steps, args.repeats = (5, 15), 2
    row = bench.e2e_row("dcgan", args, "cpu", Path("."))
    warmup = [("jgan", bench.E2E_WARMUP_STEPS), ("torch", bench.E2E_WARMUP_STEPS)]
    assert sorted(calls[:2]) == warmup, calls
    assert sorted(calls[2:]) == sorted([(side, n) for side in ("jgan", "torch") for n in (5, 15)] * 2), calls
    assert [run["steps"] for run in row["jgan"]["runs"]] == [5, 15], "the warm-up run is not one of the timed"


def test_a_long_run_no_slower_than_the_short_one_has_no_speed():
    clock = FakeClock()
    runs = {side: {5: [fake_run(clock, 5, 10.0, 0.2, {})], 15: [fake_run(clock, 15, 7.0, 0.2, {})]}
            for side in ("jgan", "torch")}
    row = bench.e2e_summary({"arch": "dcgan", "size": 64, "batch": 64, "device": "cpu", "precision": "fp32",
                             "config": {"train": {"sample_every": 1, "ckpt_every": 1}}}, runs, threads=2)
    assert row["jgan"]["images_per_s"] is None and row["speedup"] is None


@pytest.mark.parametrize("flags, says", [
    (["--e2e", "--sizes", "32"], "--sizes does not apply to --e2e"),
    (["--e2e", "--batch", "8"], "--batch does not apply to --e2e"),
    (["--e2e", "--mpi"], "--mpi does not apply to --e2e"),
    (["--steps", "5", "15"], "add --e2e"),
    (["--e2e", "--steps", "15", "5"], "the short one first"),
    (["--e2e", "--lmdb", "no-such-lmdb"], "does not exist"),
    (["--precision", "bf16", "--device", "cuda"], "drop it or pass --device cpu"),
])
def test_bad_flag_combinations_are_one_sentence_and_exit_2(flags, says):
    result = subprocess.run([sys.executable, str(SCRIPT), *flags], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, f"{flags}: exit {result.returncode}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], f"{flags}: {result.stderr!r}"


def torch_loop_counts(arch, overrides, data, size, batch, level, tmp_path, steps):
    """How often the PyTorch reference loop ran each timed part in `steps` steps (grids and
    checkpoints every 100 steps, and at the last)."""
    sys.path.insert(0, str(SCRIPT.parent.parent / "tests"))
    from jgan.config import load_config
    from jgan.stopwatch import Stopwatch
    from reference.training_torch import TorchTrainingRun
    base = {"train": {"num_workers": 0, "n_sample": 4, "sample_every": 100, "ckpt_every": 100}}
    config = load_config(arch, False, None, [base, overrides])
    watch = Stopwatch()
    TorchTrainingRun(config, data, size, batch, level, 1.0, str(tmp_path), "cpu", watch).train(steps)
    return {name: part["count"] for name, part in watch.totals().items()}


def test_the_torch_loop_keeps_train_py_cadence(tiny_lmdb, tmp_path):
    """The reference loop the e2e rows compare with: per step one data wait and two host syncs, a log
    line every log_every steps, a grid and a checkpoint at its last step."""
    counts = torch_loop_counts("dcgan", {"model": {"size": 16, "nz": 8, "ngf": 8, "ndf": 8},
                                         "train": {"batch": 4, "log_every": 2}},
                               {"images": str(tiny_lmdb)}, 16, 4, 2, tmp_path, steps=4)
    assert counts == {"step": 4, "data_wait": 4, "host_sync": 8, "log": 2, "sample": 1, "checkpoint": 1}, counts
    assert (tmp_path / "checkpoint.pt").is_file() and (tmp_path / "0000004.png").is_file()
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2


def test_the_torch_translation_loop_reads_both_domains_and_its_three_losses(tiny_lmdb, tmp_path):
    """CycleGAN's reference loop: per step a batch of each domain and three losses read on the host;
    the grid's fixed images are one more batch of each domain, drawn before the first step."""
    counts = torch_loop_counts("cyclegan", {"model": {"size": 32, "ngf": 8, "ndf": 8, "blocks": 1},
                                            "train": {"batch": 2, "n_sample": 2, "log_every": 1}},
                               {"a": str(tiny_lmdb), "b": str(tiny_lmdb)}, 32, 2, 3, tmp_path, steps=2)
    assert counts == {"data_wait": 6, "step": 2, "host_sync": 6, "log": 2, "sample": 1, "checkpoint": 1}, counts


def test_the_torch_loop_reads_the_lmdb_without_jittor():
    """Its process measures PyTorch alone: jgan.data imports Jittor only to make jgan's batches."""
    code = ("import sys; sys.path[:0] = ['.', 'tests']; import reference.training_torch; "
            "print('jittor' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=SCRIPT.parent.parent)
    assert result.stdout.strip() == "False", f"jittor imported: {result.stdout!r} {result.stderr[-500:]}"


def test_the_torch_side_of_precision_bf16_rounds_each_ungrouped_convolutions_operands(monkeypatch):
    """bench.py --precision bf16 gives PyTorch jgan's bf16 convolutions: bfloat16 copies of input and
    weight, a float32 result (rounded to bfloat16 by PyTorch on the way) plus the float32 bias."""
    import torch
    import torch.nn.functional as F
    from reference.training_torch import bfloat16_convolutions
    for name in ("conv2d", "conv_transpose2d"):
        monkeypatch.setattr(F, name, getattr(F, name))   # given back after the test
    torch.manual_seed(0)
    x = torch.rand(2, 4, 8, 8)
    conv, transposed = torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ConvTranspose2d(4, 6, 4, 2, 1)
    grouped = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)

    def on_rounded_operands(module):
        """The module in float64 on bfloat16-rounded input and weight, its bias exact."""
        copy = type(module)(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                            module.padding).double()
        copy.load_state_dict(module.state_dict())
        copy.weight.data = module.weight.data.bfloat16().double()
        return copy(x.bfloat16().double()).detach()

    wanted = [on_rounded_operands(conv), on_rounded_operands(transposed)]
    plain = [module(x).detach() for module in (conv, transposed, grouped)]
    bfloat16_convolutions()
    for module, want, exact in zip((conv, transposed), wanted, plain):
        y = module(x).detach()
        scale = float(want.abs().max())
        assert y.dtype == torch.float32
        assert float((y.double() - want).abs().max()) <= 2 ** -8 * scale, f"{type(module).__name__}: not bf16 operands"
        assert float((y - exact).abs().max()) > 1e-5 * scale, f"{type(module).__name__}: the operands were not rounded"
    assert torch.equal(grouped(x).detach(), plain[2]), "a grouped convolution stays float32"
