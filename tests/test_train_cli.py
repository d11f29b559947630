"""End to end: train.py trains every architecture, resumes, and generate.py makes every figure."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from jgan import checkpoint as ckpt

REPO = Path(__file__).resolve().parent.parent
DCGAN_FAMILY = ("dcgan", "wgan", "wgan-gp", "wganp", "lsgan", "wgan-div")
SMALL = ["--size", "32", "--batch", "8", "--set", "model.ngf=8", "--set", "model.ndf=8",
         "--workers", "0", "--no-progress", "--set", "train.n_sample=16"]


def run_script(script, *args, cwd):
    result = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    return result


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def log_steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arch", DCGAN_FAMILY)
def test_train_resume_generate(arch, tiny_lmdb, tmp_path):
    ok(run_script("train.py", tiny_lmdb, "--arch", arch, "--iters", 3, "--name", f"t-{arch}",
                  "--ckpt-every", 2, "--sample-every", 2, "--log-every", 1, *SMALL, cwd=tmp_path))
    run_dir = tmp_path / "checkpoint" / f"t-{arch}"
    assert [p.name for p in ckpt.numbered_checkpoints(run_dir)] == ["0000002.jgan", "0000003.jgan"]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "loss.png").is_file()
    assert sorted(p.name for p in (tmp_path / "sample" / f"t-{arch}").iterdir()) == ["0000002.png", "0000003.png"]
    assert log_steps(run_dir) == [1, 2, 3]

    resumed = ok(run_script("train.py", tiny_lmdb, "--iters", 5, "--name", f"t-{arch}",   # --arch: the run's
                            "--resume", "--log-every", 1, "--no-progress", cwd=tmp_path))
    assert "at step 3" in resumed.stderr
    assert log_steps(run_dir) == [1, 2, 3, 4, 5]
    assert ckpt.load_checkpoint(run_dir)["step"] == 5

    ok(run_script("generate.py", "-g", run_dir, "-s", "--walk", "--progress", cwd=tmp_path))
    results = tmp_path / "results"
    with Image.open(results / f"t-{arch}-0000005-samples.png") as image:
        assert image.size == (2 + 8 * 34, 2 + 8 * 34)
    assert len(list((results / f"t-{arch}-0000005-samples").glob("*.png"))) == 64
    with Image.open(results / f"t-{arch}-0000005-walk.gif") as gif:
        assert gif.n_frames == 4 * 12
    with Image.open(results / f"t-{arch}-0000005-progress.gif") as gif:
        assert gif.n_frames == 4  # checkpoints 2, 3 (first run), 4, 5 (resumed)


def test_resume_reads_the_arch_of_its_run_before_jittor_starts(tmp_path):
    """Jittor must not be imported before jgan.runtime.init sets it up (without a GPU it would look
    for CUDA), so the run's arch is read from its config.yaml alone."""
    run_dir = tmp_path / "checkpoint" / "old"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("arch: lsgan\n")
    code = ("import sys, train; args = train.build_parser().parse_args(sys.argv[1:]); "
            "print(train.chosen_arch(args), 'jittor' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, "lmdb", "--resume", "--name", "old"], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.split() == ["lsgan", "False"], result.stderr


def test_existing_run_is_not_overwritten_without_resume(tiny_lmdb, tmp_path):
    ok(run_script("train.py", tiny_lmdb, "--arch", "lsgan", "--iters", 1, "--name", "keep", *SMALL, cwd=tmp_path))
    before = (tmp_path / "checkpoint" / "keep" / "0000001.jgan").read_bytes()
    again = run_script("train.py", tiny_lmdb, "--arch", "lsgan", "--iters", 1, "--name", "keep", *SMALL,
                       cwd=tmp_path)
    assert again.returncode == 2
    assert "already has checkpoints; pass --resume" in again.stderr and "Traceback" not in again.stderr
    assert (tmp_path / "checkpoint" / "keep" / "0000001.jgan").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--arch", "biggan"], "unknown architecture 'biggan'; choose one of"),
    (["--arch", "dcgan", "--set", "train.n_critc=2"], "did you mean 'n_critic'"),
    (["--arch", "dcgan", "--size", "48"], "power of two"),
    (["--arch", "dcgan", "--phase", "10"], "--phase is a progressive-growing flag"),
])
def test_bad_flags_are_one_sentence(args, message, tiny_lmdb, tmp_path):
    result = run_script("train.py", tiny_lmdb, *args, "--iters", 1, "--no-progress", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


TINY_STYLEGAN = ["--set", "model.channels=[16,16,16]", "--set", "model.code_dim=16", "--set", "model.n_mlp=2",
                 "--workers", "0", "--no-progress", "--log-every", "1", "--set", "train.n_sample=16"]


def log_records(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_stylegan_grows_with_fade_in_resumes_at_16px_and_draws_the_figures(tiny_lmdb, tmp_path):
    ok(run_script("train.py", tiny_lmdb, "--arch", "stylegan", "--max-size", 16, "--phase", 16, "--batch", 4,
                  "--iters", 10, "--name", "t-sg", *TINY_STYLEGAN, cwd=tmp_path))
    run_dir = tmp_path / "checkpoint" / "t-sg"
    records = log_records(run_dir)
    assert [r["size"] for r in records] == [8] * 8 + [16] * 2      # 8 px for two phases of 16 images
    alphas = [r["alpha"] for r in records[8:]]
    assert 0 < alphas[0] < alphas[1] < 1                             # fading in
    assert [p.name for p in ckpt.numbered_checkpoints(run_dir)] == ["0000008.jgan", "0000010.jgan"]

    resumed = ok(run_script("train.py", tiny_lmdb, "--arch", "stylegan", "--iters", 12, "--name", "t-sg",
                            "--resume", "--no-progress", "--log-every", "1", cwd=tmp_path))
    assert "at step 10" in resumed.stderr
    records = log_records(run_dir)
    assert [(r["step"], r["size"]) for r in records[10:]] == [(11, 16), (12, 16)]
    assert alphas[1] < records[10]["alpha"] < records[11]["alpha"]

    ok(run_script("generate.py", "--mixing", "--noise", "--interpolate", "--truncation", "0.7",
                  "--mixing-range", "0,0", cwd=tmp_path))
    results = tmp_path / "results"
    cell = 16 + 2
    expected = {"mixing-0-0": (2 + 6 * cell, 2 + 4 * cell), "noise": (2 + 7 * cell, 2 + 3 * cell),
                "interpolation": (2 + 8 * cell, 2 + 8 * cell), "samples": (2 + 8 * cell, 2 + 8 * cell)}
    for figure, size in expected.items():
        with Image.open(results / f"t-sg-0000012-{figure}.png") as image:
            assert image.size == size, figure


def test_stylegan_figures_refuse_a_dcgan_checkpoint(tiny_lmdb, tmp_path):
    ok(run_script("train.py", tiny_lmdb, "--arch", "dcgan", "--iters", 1, "--name", "d", *SMALL, cwd=tmp_path))
    result = run_script("generate.py", "-g", tmp_path / "checkpoint" / "d", "--mixing", cwd=tmp_path)
    assert result.returncode == 2 and "needs a StyleGAN checkpoint" in result.stderr
    result = run_script("generate.py", "--mixing", cwd=tmp_path)
    assert result.returncode == 2 and "no stylegan run found" in result.stderr


def test_metrics_during_training_are_logged_and_plotted(tiny_lmdb, tmp_path):
    ok(run_script("train.py", tiny_lmdb, "--arch", "dcgan", "--iters", 4, "--name", "m", "--metrics", "swd",
                  "--metrics-every", 2, "--metrics-n", 16, *SMALL, cwd=tmp_path))
    run_dir = tmp_path / "checkpoint" / "m"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["swd"] > 0 and "swd_32" in r and "swd_16" in r for r in records)
    assert (run_dir / "metrics.png").is_file()
    bad = run_script("train.py", tiny_lmdb, "--arch", "dcgan", "--iters", 1, "--name", "m2", "--metrics", "ssim",
                     *SMALL, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown metric ssim" in bad.stderr


@pytest.mark.parametrize("sample, log, checkpoint", [(1, 3, 2), (3, 1, 1)])
def test_any_cadence_of_samples_logs_and_checkpoints_works(sample, log, checkpoint, tiny_lmdb, tmp_path):
    """Sample grids before the first log line once crashed (plotting a log that did not exist)."""
    ok(run_script("train.py", tiny_lmdb, "--arch", "lsgan", "--iters", 4, "--name", "c", "--sample-every", sample,
                  "--log-every", log, "--ckpt-every", checkpoint, "--keep", 0, *SMALL, cwd=tmp_path))
    run_dir = tmp_path / "checkpoint" / "c"
    every = {step for step in range(1, 5)}
    assert log_steps(run_dir) == sorted({s for s in every if s % log == 0} | {4})
    assert sorted(int(p.stem) for p in (tmp_path / "sample" / "c").iterdir()) == sorted({s for s in every if s % sample == 0} | {4})
    assert [int(p.stem) for p in ckpt.numbered_checkpoints(run_dir)] == sorted({s for s in every if s % checkpoint == 0} | {4})


def test_keep_prunes_to_the_newest_checkpoints_and_one_per_phase_and_resume_goes_on(tiny_lmdb, tmp_path):
    ok(run_script("train.py", tiny_lmdb, "--arch", "stylegan", "--max-size", 16, "--phase", 8, "--batch", 4,
                  "--iters", 8, "--name", "k", "--ckpt-every", 1, "--keep", 2, *TINY_STYLEGAN, cwd=tmp_path))
    run_dir = tmp_path / "checkpoint" / "k"
    # 8 px for two phases of 8 images (4 steps): the step-4 checkpoint closes that phase and is kept
    assert [p.name for p in ckpt.numbered_checkpoints(run_dir)] == ["0000004.jgan", "0000007.jgan", "0000008.jgan"]
    assert (run_dir / "latest").read_text().strip() == "0000008.jgan"
    resumed = ok(run_script("train.py", tiny_lmdb, "--arch", "stylegan", "--iters", 9, "--name", "k", "--resume",
                            "--no-progress", cwd=tmp_path))
    assert "at step 8" in resumed.stderr
    assert [p.name for p in ckpt.numbered_checkpoints(run_dir)] == ["0000004.jgan", "0000008.jgan", "0000009.jgan"]


def test_precision_bf16_says_so_or_is_refused_where_the_cpu_cannot(tiny_lmdb, tmp_path):
    """On a CPU with bfloat16 instructions the run trains and says it; elsewhere one sentence, exit 2."""
    from jgan import onednn_conv
    result = run_script("train.py", tiny_lmdb, "--arch", "wgan-gp", "--iters", 2, "--precision", "bf16", *SMALL,
                        cwd=tmp_path)
    if onednn_conv.cpu_flags() & set(onednn_conv.BF16_FLAGS):
        assert "bf16 convolutions" in ok(result).stderr
        assert ckpt.load_checkpoint(tmp_path / "checkpoint" / "wgan-gp")["config"]["train"]["precision"] == "bf16"
    else:
        assert result.returncode == 2 and "no bfloat16 instructions" in result.stderr, result.stderr
