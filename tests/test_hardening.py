"""Crash safety: a training process killed at any moment leaves only loadable checkpoints and
--resume continues from the last one; a NaN loss or a full disk never costs the last checkpoint."""
import errno
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import jittor as jt
import numpy as np
import pytest

from jgan import checkpoint as ckpt

REPO = Path(__file__).resolve().parent.parent
TINY = ["--arch", "wgan-gp", "--size", "32", "--batch", "4", "--set", "model.ngf=8", "--set", "model.ndf=8",
        "--workers", "0", "--no-progress", "--ckpt-every", "1", "--sample-every", "1000", "--log-every", "1",
        "--n-critic", "1", "--iters", "100000", "--name", "crash"]


def train_and_kill(lmdb, cwd, resume, records_before, delay):
    """Start a training run, wait until it logs a step past `records_before`, wait `delay` s, SIGKILL it."""
    command = [sys.executable, str(REPO / "train.py"), str(lmdb), *TINY, *(["--resume"] if resume else [])]
    log = cwd / "checkpoint" / "crash" / "log.jsonl"
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.time() + 300
        while len(log_records(log.parent)) <= records_before:
            assert process.poll() is None and time.time() < deadline, \
                f"training stopped or stalled: {process.stderr.read().decode()[-2000:]}"
            time.sleep(0.05)
        time.sleep(delay)
    finally:
        process.kill()
        process.wait()


def log_records(run_dir):
    """The run's log, without a line torn by the kill."""
    path = run_dir / "log.jsonl"
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}\n")]


def test_sigkill_at_random_moments_never_leaves_a_broken_checkpoint(tiny_lmdb, tmp_path):
    """Ten runs killed with SIGKILL after a random time (checkpoints are written every step, so
    some kills land inside a write); each resume starts right after the last saved step."""
    run_dir = tmp_path / "checkpoint" / "crash"
    rng = random.Random(7)
    saved = None
    for _ in range(10):
        records_before = len(log_records(run_dir))
        train_and_kill(tiny_lmdb, tmp_path, saved is not None, records_before, rng.uniform(0.0, 1.5))
        if saved is not None:
            assert log_records(run_dir)[records_before]["step"] == saved + 1
        for path in ckpt.numbered_checkpoints(run_dir):
            assert ckpt.load_checkpoint(path)["step"] == int(path.stem), path
        latest = ckpt.load_checkpoint(run_dir)["step"]
        assert saved is None or latest >= saved
        saved = latest
    assert saved > 10


def tiny_trainer(tiny_lmdb, tmp_path, nan_policy="stop"):
    from jgan.config import load_config
    from jgan.training import Trainer
    config = load_config("wgan-gp", False, None, [{"model": {"size": 32, "ngf": 8, "ndf": 8},
                                                   "train": {"batch": 4, "num_workers": 0, "n_critic": 1,
                                                             "n_sample": 4, "ckpt_every": 2}}])
    return Trainer(config, tiny_lmdb, tmp_path / "run", tmp_path / "sample", progress=False,
                   nan_policy=nan_policy)


def poison_discriminator_loss(trainer, from_step):
    """Make the discriminator loss NaN from step `from_step` on."""
    loss = trainer.model.loss.discriminator_loss

    def poisoned(critic, real, fake, regularise=True):
        value, terms = loss(critic, real, fake, regularise)
        return (value * float("nan"), terms) if trainer.step + 1 >= from_step else (value, terms)

    trainer.model.loss.discriminator_loss = poisoned


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_lmdb, tmp_path):
    from jgan.training import TrainingDiverged
    trainer = tiny_trainer(tiny_lmdb, tmp_path)
    poison_discriminator_loss(trainer, from_step=3)
    with pytest.raises(TrainingDiverged, match="discriminator loss is not finite at step 3; the last good checkpoint"):
        trainer.train(10)
    assert ckpt.load_checkpoint(tmp_path / "run")["step"] == 2
    assert [p.name for p in ckpt.numbered_checkpoints(tmp_path / "run")] == ["0000002.jgan"]


def test_nan_policy_skip_leaves_the_weights_untouched_and_goes_on(tiny_lmdb, tmp_path):
    trainer = tiny_trainer(tiny_lmdb, tmp_path, nan_policy="skip")
    trainer.train(2)
    before = ckpt.module_state(trainer.model.discriminator)
    poison_discriminator_loss(trainer, from_step=3)
    trainer.train(4)
    assert trainer.step == 4 and trainer.skipped_steps == 2
    for name, value in ckpt.module_state(trainer.model.discriminator).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])["skipped"] == 2


class NaNGradient(jt.Function):
    """The identity, whose gradient is NaN: a finite loss with non-finite gradients."""

    def execute(self, x):
        return x

    def grad(self, grad):
        return grad * float("nan")


def test_nan_policy_skip_does_not_apply_finite_losses_with_nan_gradients(tiny_lmdb, tmp_path):
    """Seen: a DCGAN whose generator drew NaN from one step on, every later step skipped."""
    trainer = tiny_trainer(tiny_lmdb, tmp_path, nan_policy="skip")
    trainer.train(2)
    before = ckpt.module_state(trainer.model.discriminator)
    adam_steps = trainer.model.optimizers()["discriminator"].n_step
    loss = trainer.model.loss.discriminator_loss

    def nan_gradients(critic, real, fake, regularise=True):
        value, terms = loss(critic, real, fake, regularise)
        return NaNGradient()(value), terms

    trainer.model.loss.discriminator_loss = nan_gradients
    trainer.train(3)
    assert trainer.skipped_steps == 1
    assert trainer.model.optimizers()["discriminator"].n_step == adam_steps
    for name, value in ckpt.module_state(trainer.model.discriminator).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    trainer.model.loss.discriminator_loss = loss
    trainer.train(4)
    assert trainer.skipped_steps == 1 and trainer.model.optimizers()["discriminator"].n_step == adam_steps + 1
    assert all(np.isfinite(value).all() for value in ckpt.module_state(trainer.model.discriminator).values())


def test_nan_policy_skip_keeps_batchnorm_statistics_and_the_ema_finite_when_a_forward_pass_is_not(tiny_lmdb,
                                                                                                  tmp_path):
    """A non-finite forward pass updates BatchNorm's running statistics before its loss can be
    checked; a skipped step must not keep them (seen: a DCGAN whose samples were all NaN)."""
    from jgan.config import load_config
    from jgan.training import Trainer
    config = load_config("dcgan", False, None, [{"model": {"size": 32, "ngf": 8, "ndf": 8, "nz": 16},
                                                 "train": {"batch": 4, "num_workers": 0, "n_sample": 4,
                                                           "ema": 0.9}}])
    trainer = Trainer(config, tiny_lmdb, tmp_path / "run", tmp_path / "sample", progress=False, nan_policy="skip")
    trainer.train(2)
    before = {name: ckpt.module_state(module) for name, module in trainer.model.modules().items()}
    loss = trainer.model.loss.discriminator_loss

    def nan_images(critic, real, fake, regularise=True):
        return loss(critic, real * float("nan"), fake, regularise)

    trainer.model.loss.discriminator_loss = nan_images
    trainer.train(3)
    assert trainer.skipped_steps == 1
    for name, module in trainer.model.modules().items():
        after = ckpt.module_state(module)
        for key in ("running_mean", "running_var"):
            stats = [k for k in after if k.endswith(key)]
            assert stats, f"{name} has no {key}"
            for k in stats:
                np.testing.assert_array_equal(after[k], before[name][k], err_msg=f"{name}.{k}")


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tiny_lmdb, tmp_path, monkeypatch):
    from jgan.errors import CheckpointError
    trainer = tiny_trainer(tiny_lmdb, tmp_path)
    trainer.train(2)

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is kept"):
        trainer.train(4)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(tmp_path / "run")["step"] == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []


# ----- one writer per run ------------------------------------------------------------------------
HOLD_RUN = """
import sys, time
from jgan import runlock
with runlock.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def train(lmdb, cwd, *args):
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), str(lmdb), *TINY[:-4], "--iters", "2",
                             "--name", "crash", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_held_run_is_refused_naming_its_holder_and_a_dead_holder_never_blocks(tiny_lmdb, tmp_path):
    run_dir = tmp_path / "checkpoint" / "crash"
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        _, stderr = train(tiny_lmdb, tmp_path).communicate(timeout=300)
        lines = [line for line in stderr.splitlines() if not line.startswith(("jgan: ", "train: "))]
        assert len(lines) == 1 and f"is being trained by PID {holder.pid} on " in lines[0] and " since 20" in lines[0], stderr
        assert not ckpt.numbered_checkpoints(run_dir)
    finally:
        holder.kill()       # SIGKILL: the process cannot release anything itself
        holder.wait()
    assert (run_dir / ".lock").exists()   # its note stays behind; the lock itself went with it
    process = train(tiny_lmdb, tmp_path)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    assert not (run_dir / ".lock").exists()


def test_two_runs_started_together_never_both_write(tiny_lmdb, tmp_path):
    first, second = train(tiny_lmdb, tmp_path), train(tiny_lmdb, tmp_path)
    results = [(process.wait(timeout=300), process.stderr.read()) for process in (first, second)]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = [err for code, err in results if code == 2][0]
    assert "is being trained by PID" in refused or "already has checkpoints" in refused, refused
    assert [record["step"] for record in log_records(tmp_path / "checkpoint" / "crash")] == [1, 2]



def test_a_refused_writer_waits_for_the_holders_note_and_never_names_a_dead_process(tmp_path, monkeypatch):
    import socket
    import threading

    from jgan import runlock
    monkeypatch.setattr(runlock, "NOTE_WAIT_S", 1.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / runlock.HOLDER).write_text(f"PID {dead.pid} on {socket.gethostname()} since 2026-01-01 00:00:00 UTC\n")
    assert runlock.holder(tmp_path) == "another process"     # a killed holder's note, not yet replaced
    late = threading.Timer(0.3, runlock.write_note, [tmp_path])
    late.start()
    assert runlock.holder(tmp_path).startswith(f"PID {os.getpid()} on {socket.gethostname()} since 20")
    late.join()
    assert [path.name for path in tmp_path.iterdir()] == [runlock.HOLDER]

# ----- bad records -------------------------------------------------------------------------------
def garbled(tiny_lmdb, folder, keys):
    import shutil

    import lmdb
    shutil.copytree(tiny_lmdb, folder)
    with lmdb.open(str(folder)) as env, env.begin(write=True) as txn:
        for key in keys:
            txn.put(key.encode(), os.urandom(300))
    return folder


def test_one_bad_record_is_skipped_and_training_goes_on(tiny_lmdb, tmp_path, capsys):
    trainer = tiny_trainer(garbled(tiny_lmdb, tmp_path / "lmdb", ["32-00005"]), tmp_path)
    trainer.train(12)         # two passes over the 24 images
    assert trainer.step == 12 and trainer.bad_records["images"].keys == ["32-00005"]
    assert capsys.readouterr().err.count("record 32-00005 of") == 1


def test_too_many_bad_records_stop_training_with_a_checkpoint(tiny_lmdb, tmp_path):
    from jgan.errors import DataError
    trainer = tiny_trainer(garbled(tiny_lmdb, tmp_path / "lmdb", ["32-00003", "32-00011", "32-00017"]), tmp_path)
    with pytest.raises(DataError, match=r"records of the 24 images of .* cannot be decoded \(e\.g\. 32-000.*; "
                                        r"stopped at step \d+ with checkpoint .*prepare_data.py --verify"):
        trainer.train(100)
    assert trainer.step < 12 and ckpt.load_checkpoint(tmp_path / "run")["step"] == trainer.step
