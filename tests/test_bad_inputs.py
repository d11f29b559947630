"""Every input a user can get wrong is answered by one sentence on stderr and exit code 2, with
nothing overwritten or deleted. The table in README.md ("When something is wrong") lists them."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from conftest import shape_image, write_folder

REPO = Path(__file__).resolve().parent.parent
TINY = ["--set", "model.ngf=8", "--set", "model.ndf=8", "--workers", "0", "--no-progress"]


def run_script(script, *args, cwd):
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def workspace(tiny_lmdb, tmp_path_factory):
    """A folder with the inputs of every case: broken LMDBs, a trained run, broken checkpoints."""
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "empty").mkdir()
    write_folder(root / "corrupt", {"a.png": b"\x89PNG\r\n\x1a\n broken", "notes.txt": b"hello"})
    write_folder(root / "images", {f"{i}.png": shape_image(i) for i in range(4)})
    (root / "not_lmdb").mkdir()
    (root / "not_lmdb" / "readme.txt").write_text("not an lmdb")
    for name, key in (("no_length", b"length"), ("no_index", b"32-00003")):
        shutil.copytree(tiny_lmdb, root / name)
        with lmdb.open(str(root / name)).begin(write=True) as txn:
            txn.delete(key)
    shutil.copytree(tiny_lmdb, root / "garbled")
    with lmdb.open(str(root / "garbled")) as env, env.begin(write=True) as txn:
        for key in (b"32-00003", b"32-00011", b"32-00017"):
            txn.put(key, b"not an image")
    (root / "checkpoint" / "held").mkdir(parents=True)
    (root / "a_file").write_text("not a folder")
    (root / "unknown_key.yaml").write_text("train:\n  n_critc: 3\n")
    (root / "wrong_type.yaml").write_text("train:\n  batch: eight\n")
    result = run_script("train.py", tiny_lmdb, "--arch", "wgan-gp", "--size", 32, "--batch", 4, "--iters", 1,
                        "--name", "run", *TINY, cwd=root)
    assert result.returncode == 0, result.stderr
    checkpoint = root / "checkpoint" / "run" / "0000001.jgan"
    (root / "truncated.jgan").write_bytes(checkpoint.read_bytes()[:1000])
    (root / "random.jgan").write_bytes(os.urandom(4096))
    return root


CASES = {
    "missing dataset folder": ("prepare_data.py", ["--out", "x", "missing/"], "does not exist"),
    "empty dataset folder": ("prepare_data.py", ["--out", "x", "empty/"], "no usable images"),
    "only corrupt or non-image files": ("prepare_data.py", ["--out", "x", "corrupt/"], "no usable images"),
    "existing --out without --force": ("prepare_data.py", ["--out", "not_lmdb", "images/"], "--force"),
    "LMDB path that is not an LMDB": ("train.py", ["not_lmdb", "--iters", "1"], "is not an LMDB"),
    "LMDB without the requested size": ("train.py", ["{lmdb}", "--size", "64"], "it has sizes 8, 16, 32"),
    "LMDB missing its length key": ("train.py", ["no_length", "--size", "32"], "no `length` key"),
    "LMDB missing an image": ("train.py", ["no_index", "--size", "32", "--batch", "24", "--iters", "1"],
                              "has no image 32-00003"),
    "--size not a power of two": ("train.py", ["{lmdb}", "--size", "48"], "power of two"),
    "unknown --arch": ("train.py", ["{lmdb}", "--arch", "biggan"], "choose one of dcgan, wgan, wgan-gp"),
    "cyclegan with one LMDB": ("train.py", ["{lmdb}", "--arch", "cyclegan"], "cyclegan trains on 2 LMDBs, got 1"),
    "config with an unknown key": ("train.py", ["{lmdb}", "--config", "unknown_key.yaml"], "did you mean 'n_critic'"),
    "config with a wrong type": ("train.py", ["{lmdb}", "--config", "wrong_type.yaml"],
                                 "config key train.batch must be an integer of at least 1 or null, got 'eight' (str)"),
    "--batch < 1": ("train.py", ["{lmdb}", "--size", "32", "--batch", "0"], "--batch: must be an integer of at least 1"),
    "--batch larger than the data set": ("train.py", ["{lmdb}", "--size", "32", "--batch", "25"],
                                         "choose a batch size between 1 and 24"),
    "output folder not writable": ("train.py", ["{lmdb}", "--checkpoint-dir", "a_file/checkpoints"], "cannot write to"),
    "resume with another arch": ("train.py", ["{lmdb}", "--arch", "dcgan", "--name", "run", "--resume"],
                                 "is a wgan-gp run, not dcgan"),
    "resume at another resolution": ("train.py", ["{lmdb}", "--arch", "wgan-gp", "--name", "run", "--resume",
                                                  "--size", "16"], "was trained with model.size=32"),
    "existing run without --resume": ("train.py", ["{lmdb}", "--arch", "wgan-gp", "--name", "run"], "pass --resume"),
    "truncated checkpoint": ("generate.py", ["-g", "truncated.jgan"], "truncated"),
    "file that is not a checkpoint": ("generate.py", ["-g", "random.jgan"], "not a readable jgan checkpoint"),
    "missing checkpoint": ("generate.py", ["-g", "checkpoint/nothing"], "does not exist"),
    "StyleGAN figure from a DCGAN-family run": ("generate.py", ["-g", "checkpoint/run", "--noise"],
                                                "needs a StyleGAN checkpoint"),
    # the out-of-range values of issue 17: each once a traceback or a meaningless run
    "--seed -3": ("train.py", ["{lmdb}", "--seed", "-3"], "--seed: must be an integer from 0 to 2147483647, got '-3'"),
    "--log-every 0": ("train.py", ["{lmdb}", "--log-every", "0"], "--log-every: must be an integer of at least 1"),
    "--sample-every 0": ("train.py", ["{lmdb}", "--sample-every", "0"], "--sample-every: must be an integer of at least 1"),
    "--ckpt-every 0": ("train.py", ["{lmdb}", "--ckpt-every", "0"], "--ckpt-every: must be an integer of at least 1"),
    "--set model.ngf=0": ("train.py", ["{lmdb}", "--set", "model.ngf=0"],
                          "config key model.ngf must be an integer of at least 1, got 0"),
    "--set optim.betas=[2,3]": ("train.py", ["{lmdb}", "--set", "optim.betas=[2,3]"],
                                "config key optim.betas must be two numbers in [0, 1), got [2, 3]"),
    "--ema 1.5": ("train.py", ["{lmdb}", "--ema", "1.5"], "--ema: must be a number in [0, 1), got '1.5'"),
    "--ema -1": ("train.py", ["{lmdb}", "--ema", "-1"], "--ema: must be a number in [0, 1), got '-1'"),
    "--n-critic 0": ("train.py", ["{lmdb}", "--n-critic", "0"], "--n-critic: must be an integer of at least 1"),
    "--lr -0.1": ("train.py", ["{lmdb}", "--lr", "-0.1"], "--lr: must be a number in (0, 1], got '-0.1'"),
    "--minutes -1": ("train.py", ["{lmdb}", "--minutes", "-1"], "--minutes: must be a number above 0, got '-1'"),
    "--iters -5": ("train.py", ["{lmdb}", "--iters", "-5"], "--iters: must be an integer of at least 1, got '-5'"),
    "StyleGAN --mixing 2": ("train.py", ["{lmdb}", "--arch", "stylegan", "--mixing", "2"],
                            "--mixing: must be a number in [0, 1], got '2'"),
    "--init-size above --max-size": ("train.py", ["{lmdb}", "--arch", "stylegan", "--init-size", "32", "--max-size", "16"],
                                     "progressive.init_size 32 is larger than progressive.max_size 16"),
    "a progressive run growing past the LMDB's sizes": ("train.py", ["{lmdb}", "--arch", "stylegan", "--max-size", "64",
                                                                   "--batch", "4"],
                                                        "has no 64 px images, it has sizes 8, 16, 32"),
    "--keep -1": ("train.py", ["{lmdb}", "--keep", "-1"], "--keep: must be an integer of at least 0"),
    "generate.py --n 0": ("generate.py", ["--n", "0"], "--n: must be an integer from 1 to 4096, got '0'"),
    "generate.py --truncation 2": ("generate.py", ["--truncation", "2"], "--truncation: must be a number in [0, 1]"),
    "LMDB with too many undecodable records": ("train.py", ["garbled", "--size", "32", "--batch", "4", "--iters", "50",
                                                            "--n-critic", "1", "--name", "garbled"],
                                               "cannot be decoded (e.g. 32-00"),
    "prepare_data.py --verify of an LMDB with bad records": ("prepare_data.py", ["--verify", "garbled"],
                                                             "3 of the 72 records of garbled are bad"),
    "a run another process is training": ("train.py", ["{lmdb}", "--name", "held"], "is being trained by PID"),
}


HOLD_RUN = """
import sys, time
from jgan import runlock
with runlock.hold("checkpoint/held"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def held_run(workspace):
    """checkpoint/held of the workspace, held by another process for the duration of a test."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN], cwd=workspace, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    yield
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_sentence_and_exit_code_2(case, workspace, tiny_lmdb, request):
    if "another process" in case:
        request.getfixturevalue("held_run")
    script, args, expected = CASES[case]
    args = [str(tiny_lmdb) if a == "{lmdb}" else a for a in args]
    before = {p: p.stat().st_mtime_ns for p in workspace.rglob("*") if p.is_file()}
    tiny = TINY if "stylegan" not in args else TINY[4:]     # model.ngf and ndf are the DCGAN family's
    result = run_script(script, *(tiny if script == "train.py" else []), *args, cwd=workspace)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("jgan: ")
             and not line.startswith(("train: ", "generate: ")) and "Compiling" not in line]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and expected in lines[0], result.stderr
    after = {p: p.stat().st_mtime_ns for p in workspace.rglob("*") if p.is_file()}
    changed = [str(p) for p, t in before.items() if after.get(p) != t]
    assert not changed, f"existing files were changed: {changed}"
