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
    "config with an unknown key": ("train.py", ["{lmdb}", "--config", "unknown_key.yaml"], "did you mean 'n_critic'"),
    "config with a wrong type": ("train.py", ["{lmdb}", "--config", "wrong_type.yaml"], "train.batch must be int"),
    "--batch < 1": ("train.py", ["{lmdb}", "--size", "32", "--batch", "0"], "choose a batch size between 1 and 24"),
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
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_sentence_and_exit_code_2(case, workspace, tiny_lmdb):
    script, args, expected = CASES[case]
    args = [str(tiny_lmdb) if a == "{lmdb}" else a for a in args]
    before = {p: p.stat().st_mtime_ns for p in workspace.rglob("*") if p.is_file()}
    result = run_script(script, *args, *(TINY if script == "train.py" else []), cwd=workspace)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("jgan: ")
             and not line.startswith(("train: ", "generate: ")) and "Compiling" not in line]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and expected in lines[0], result.stderr
    after = {p: p.stat().st_mtime_ns for p in workspace.rglob("*") if p.is_file()}
    changed = [str(p) for p, t in before.items() if after.get(p) != t]
    assert not changed, f"existing files were changed: {changed}"
