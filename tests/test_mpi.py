"""Data-parallel training under mpirun: ranks stay identical and only rank 0 writes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jgan import checkpoint as ckpt
from jgan import registry

REPO = Path(__file__).resolve().parent.parent
TINY = {"wgan-gp": ["--size", "32", "--set", "model.ngf=8", "--set", "model.ndf=8", "--n-critic", "2"],
        "stylegan": ["--max-size", "16", "--phase", "16", "--set", "model.channels=[16,16,16]",
                     "--set", "model.code_dim=16", "--set", "model.n_mlp=2"],
        "pggan": ["--max-size", "16", "--phase", "16", "--set", "model.channels=[16,16,16]",
                  "--set", "model.code_dim=16"]}


def mpirun(*args, cwd, ranks=2):
    assert shutil.which("mpirun"), "mpirun is missing: scripts/test.sh installs openmpi-bin"
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    command = ["mpirun", *root, "--oversubscribe", "-np", str(ranks), "-x", "PYTHONPATH",
               sys.executable, str(REPO / "train.py"), *map(str, args)]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.parametrize("arch, iters, resume_to", [("wgan-gp", 3, 5), ("stylegan", 10, 12), ("pggan", 10, 12)])
def test_two_ranks_train_identically_and_write_one_set_of_outputs(arch, iters, resume_to, tiny_lmdb, tmp_path):
    common = [tiny_lmdb, "--arch", arch, "--batch", 4, "--name", "mpi", "--workers", 0, "--no-progress",
              "--log-every", 1, "--ckpt-every", 2, "--sample-every", 100, *TINY[arch]]
    first = mpirun(*common, "--iters", iters, cwd=tmp_path)
    assert first.stderr.count("train: done") + first.stdout.count("train: done") == 1
    mpirun(*common, "--iters", resume_to, "--resume", cwd=tmp_path)
    run_dir = tmp_path / "checkpoint" / "mpi"
    steps = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, resume_to + 1))                 # one writer, resumed where it stopped
    for path in ckpt.numbered_checkpoints(run_dir):
        document = ckpt.load_checkpoint(path)
        checksums = document["rank_checksums"]
        assert len(checksums) == 2 and checksums[0] == checksums[1], path
    assert len(list((tmp_path / "sample" / "mpi").iterdir())) == 2   # end of each of the two runs
    if registry.get(arch).progressive:
        sizes = [json.loads(line)["size"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
        assert sizes[0] == 8 and sizes[-1] == 16                  # a phase change under MPI
        assert ckpt.load_checkpoint(run_dir)["images"] == 4 * resume_to   # --batch is the global batch
    generated = subprocess.run([sys.executable, str(REPO / "generate.py"), "-g", str(run_dir)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=600)
    assert generated.returncode == 0, generated.stderr


def test_cyclegan_keeps_an_image_pool_per_rank_in_its_checkpoints(tiny_lmdb, tmp_path):
    second = tmp_path / "lmdb-b"
    shutil.copytree(tiny_lmdb, second)
    common = [tiny_lmdb, second, "--arch", "cyclegan", "--size", 32, "--set", "model.ngf=8", "--set", "model.ndf=8",
              "--set", "model.blocks=1", "--set", "train.pool=4", "--batch", 2, "--name", "mpi", "--workers", 0,
              "--no-progress", "--log-every", 1, "--ckpt-every", 2, "--sample-every", 100]
    mpirun(*common, "--iters", 3, cwd=tmp_path)
    mpirun(*common, "--iters", 4, "--resume", cwd=tmp_path)
    run_dir = tmp_path / "checkpoint" / "mpi"
    steps = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    for path in ckpt.numbered_checkpoints(run_dir):
        document = ckpt.load_checkpoint(path)
        assert len(set(document["rank_checksums"])) == 1, path          # the networks agree
        pools = [state["pool_a"] for state in document["model_states"]]
        assert len(pools) == 2 and pools[0].shape == pools[1].shape, path
        assert not (pools[0] == pools[1]).all(), path                   # each rank pools its own fakes
