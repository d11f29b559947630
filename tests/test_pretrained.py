"""Pretrained models (jgan.pretrained): export a run's EMA generator, load it by name behind its
checksum, draw from it with generate.py when there is no run, and start a new run from it."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jgan
from jgan import checkpoint as ckpt
from jgan import pretrained
from jgan.config import load_config
from jgan.errors import CheckpointError, ConfigError
from jgan.generation import load_trained, random_z, sample_grid, style_mixing_figure, synthesize
from jgan.training import Trainer

REPO = Path(__file__).resolve().parent.parent
TINY = {"stylegan": {"model": {"code_dim": 16, "n_mlp": 2, "channels": [16, 16, 8, 8]},
                     "progressive": {"init_size": 8, "max_size": 16},
                     "train": {"batch": 2, "num_workers": 0, "n_sample": 4, "ema": 0.9}},
        "dcgan": {"model": {"size": 32, "nz": 16, "ngf": 8, "ndf": 8},
                  "train": {"batch": 4, "num_workers": 0, "n_sample": 4, "ema": 0.9}}}
# the same tiny StyleGAN as train.py flags
STYLEGAN_FLAGS = ["--arch", "stylegan", "--set", "model.code_dim=16", "--set", "model.n_mlp=2",
                  "--set", "model.channels=[16, 16, 8, 8]", "--init-size", "8", "--max-size", "16",
                  "--batch", "2", "--workers", "0", "--set", "train.n_sample=4", "--no-progress"]
CARD = ["--data", "24 coloured shapes (tests/conftest.py)", "--licence", "made by the tests"]


def run_script(script, *args, cwd, root):
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO), pretrained.ENV: str(root)})


def ok(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def refused(result, words):
    """A refusal in one sentence: exit code 2, one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("\x1b[")
             and not line.startswith("jittor")]
    assert lines[-1].count("error:") == 1 and words in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def train_tiny(arch, lmdb, run_dir, iters=2):
    config = load_config(arch, False, None, [TINY[arch]])
    trainer = Trainer(config, lmdb, run_dir, run_dir.parent.parent / "sample" / run_dir.name, progress=False)
    trainer.train(iters)
    return trainer


@pytest.fixture(scope="module")
def shipped(tiny_lmdb, tmp_path_factory):
    """Two tiny runs, in work/checkpoint/, exported into the pretrained folder `root`: tiny-sg
    (StyleGAN, the default, by the script) and tiny-dc (DCGAN, SWD measured, by jgan.pretrained)."""
    work = tmp_path_factory.mktemp("pretrained-work")
    root = work / "pretrained"
    runs = {arch: work / "checkpoint" / name for arch, name in (("stylegan", "sg"), ("dcgan", "dc"))}
    for arch, run_dir in runs.items():
        train_tiny(arch, tiny_lmdb, run_dir)
    exported = ok(run_script("scripts/export_pretrained.py", runs["stylegan"], "--name", "tiny-sg", "--default",
                             "--pretrained-dir", root, "--swd", "50.5", "--recipe", "train_tiny('stylegan')",
                             *CARD, cwd=work, root=root))
    assert "export: tiny-sg: stylegan at 8 px" in exported.stdout
    pretrained.export(runs["dcgan"], "tiny-dc", root, data=CARD[1], licence=CARD[3], lmdb=tiny_lmdb, n=16)
    return {"root": root, "runs": runs, "lmdb": tiny_lmdb}


def copy_of(root, tmp_path):
    return Path(shutil.copytree(root, tmp_path / "pretrained"))


def test_export_ships_the_ema_generator_alone_with_its_checksum_card_and_grid(shipped):
    root = shipped["root"]
    manifest = pretrained.read_manifest(root)
    assert manifest["default"] == "tiny-sg"
    assert [item["name"] for item in manifest["models"]] == ["tiny-sg", "tiny-dc"]
    for item, (arch, run) in zip(manifest["models"], shipped["runs"].items()):
        path = root / item["file"]
        assert item["sha256"] == pretrained.sha256(path) and item["bytes"] == path.stat().st_size
        assert item["arch"] == arch and item["images_shown"] == ckpt.load_checkpoint(run)["images"]
        meta, state = pretrained.read_weights(path)
        ema = ckpt.load_checkpoint(run)["networks"]["generator_ema"]
        assert sorted(state) == sorted(ema), "the file holds the EMA generator's state and nothing else"
        for key, value in state.items():
            assert value.dtype == np.float32 and np.array_equal(value, ema[key]), key
        card = (root / item["card"]).read_text()
        for words in (CARD[1], CARD[3], item["sha256"], f"![64 samples, seed 0]({item['grid']})", "SWD ×1e3"):
            assert words in card, words
        with Image.open(root / item["grid"]) as grid:
            assert grid.size == (2 + 8 * (item["size"] + 2),) * 2
    sg, dc = manifest["models"]
    assert sg["swd"] == 50.5 and sg["recipe"] == "train_tiny('stylegan')" and sg["size"] == 8
    assert dc["swd"] > 0 and dc["swd_n"] == 16 and dc["size"] == 32


def test_exporting_the_same_run_again_gives_the_same_weights_file_and_sha256(shipped, tmp_path):
    root = copy_of(shipped["root"], tmp_path)
    before = pretrained.entry("tiny-dc", root)
    again = pretrained.export(shipped["runs"]["dcgan"], "tiny-dc", root, data=CARD[1], licence=CARD[3], swd=1.0)
    assert again["sha256"] == before["sha256"] and again["bytes"] == before["bytes"]
    with zipfile.ZipFile(root / again["file"]) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert {info.date_time for info in archive.infolist()} == {pretrained.ZIP_DATE}


def test_a_pretrained_model_loads_by_name_with_the_weights_it_was_exported_with(shipped, monkeypatch):
    root = shipped["root"]
    monkeypatch.setenv(pretrained.ENV, str(root))
    for name, arch in (("tiny-sg", "stylegan"), ("tiny-dc", "dcgan")):
        item = pretrained.entry(name)
        _, state = pretrained.read_weights(root / item["file"])
        for source in (name, f"pretrained/{name}", root / item["file"]):
            trained = load_trained(source)
            assert (trained.name, trained.arch, trained.size) == (name, arch, item["size"]), source
        module = jgan.load_generator(name)
        for key, value in module.state_dict().items():
            assert np.array_equal(value.numpy(), state[key]), key
        images = synthesize(trained, random_z(3, trained.latent_dim, 0))
        assert images.shape == (3, 3, item["size"], item["size"]) and np.isfinite(images).all()
    with pytest.raises(CheckpointError, match="there is no pretrained model 'nothing'.*lists tiny-sg, tiny-dc"):
        load_trained("nothing")


def test_a_damaged_or_missing_weights_file_is_refused_in_one_sentence(shipped, tmp_path):
    root = copy_of(shipped["root"], tmp_path)
    path = root / "tiny-dc.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        pretrained.load_trained("tiny-dc", root=root)
    message = str(error.value)
    assert "\n" not in message and "does not match the sha256" in message and "git checkout" in message
    result = run_script("generate.py", "-g", "tiny-dc", cwd=tmp_path, root=root)
    refused(result, "does not match the sha256")
    path.unlink()
    with pytest.raises(CheckpointError, match="tiny-dc.npz, are missing; restore them"):
        pretrained.load_trained("tiny-dc", root=root)
    assert pretrained.load_trained("tiny-sg", root=root).name == "tiny-sg", "the other model is intact"


def test_generate_draws_from_the_pretrained_default_when_there_is_no_run_and_lists_both(shipped, tmp_path):
    root = shipped["root"]
    result = ok(run_script("generate.py", "--mixing", "--noise", "--n", "4", cwd=tmp_path, root=root))
    said = [line for line in result.stderr.splitlines() if "pretrained model tiny-sg draws" in line]
    assert said == ["generate: no run in checkpoint/, so the pretrained model tiny-sg draws the figures "
                    "(train one, or pick another with -g)"]
    for figure in ("samples", "mixing-coarse", "noise"):
        assert (tmp_path / "results" / f"tiny-sg-{figure}.png").is_file(), figure

    listed = ok(run_script("generate.py", "--list", cwd=tmp_path, root=root)).stdout
    assert "runs in checkpoint/:\n  (none)\n" in listed
    assert "  tiny-sg  stylegan  8 px  SWD 50.5" in listed and listed.splitlines()[-2].endswith("(default)")
    assert "  tiny-dc  dcgan  32 px  SWD" in listed

    shutil.copytree(shipped["runs"]["dcgan"], tmp_path / "checkpoint" / "dc")
    listed = ok(run_script("generate.py", "--list", cwd=tmp_path, root=root)).stdout
    assert "  dc  dcgan  checkpoint/dc/0000002.jgan" in listed
    result = ok(run_script("generate.py", "--n", "4", cwd=tmp_path, root=root))
    assert "pretrained" not in result.stderr, "a run in checkpoint/ comes first"
    assert (tmp_path / "results" / "dc-0000002-samples.png").is_file()


def test_without_a_run_style_figures_come_from_a_pretrained_stylegan_when_the_default_is_not_one(shipped,
                                                                                                  tmp_path):
    root = copy_of(shipped["root"], tmp_path)
    manifest = pretrained.read_manifest(root)
    (root / pretrained.MANIFEST).write_text(pretrained.manifest_text({**manifest, "default": "tiny-dc"}))
    assert pretrained.default_name(root) == "tiny-dc"
    assert pretrained.default_name(root, archs=["stylegan"]) == "tiny-sg"
    assert pretrained.default_name(root, archs=["pggan"]) is None
    result = ok(run_script("generate.py", "--mixing", "--n", "4", cwd=tmp_path, root=root))
    assert "the pretrained model tiny-sg draws the figures" in result.stderr
    assert (tmp_path / "results" / "tiny-sg-mixing-coarse.png").is_file()
    result = ok(run_script("generate.py", "--n", "4", cwd=tmp_path, root=root))
    assert "the pretrained model tiny-dc draws the figures" in result.stderr


def test_with_neither_a_run_nor_a_pretrained_default_the_error_is_the_old_one(tmp_path):
    empty = tmp_path / "no-models"
    refused(run_script("generate.py", cwd=tmp_path, root=empty), "no run found in checkpoint/")
    refused(run_script("generate.py", "-g", "emoji-stylegan", cwd=tmp_path, root=empty),
            "there is no pretrained model 'emoji-stylegan'")


def test_progress_and_raw_weights_are_refused_for_a_pretrained_model(shipped, tmp_path):
    root = shipped["root"]
    with pytest.raises(ConfigError, match="holds only its EMA generator; drop --no-ema"):
        pretrained.load_trained("tiny-sg", ema=False, root=root)
    refused(run_script("generate.py", "-g", "tiny-sg", "--progress", cwd=tmp_path, root=root),
            "--progress needs a run's checkpoints, but tiny-sg is a pretrained model")


@pytest.mark.parametrize("arch,name", [("stylegan", "tiny-sg"), ("dcgan", "tiny-dc")])
def test_a_new_run_started_from_a_pretrained_model_holds_its_weights_in_generator_and_ema(arch, name, shipped,
                                                                                          tmp_path):
    _, state = pretrained.read_weights(shipped["root"] / f"{name}.npz")
    source = pretrained.generator_source(name, root=shipped["root"])
    config = load_config(arch, False, None, [TINY[arch], {"train": {"seed": 7}}])
    pretrained.check_compatible(source, config)
    trainer = Trainer(config, None, tmp_path / "run", tmp_path / "sample", progress=False)
    before = trainer.model.generator.state_dict()
    assert any(not np.array_equal(var.numpy(), state[key]) for key, var in before.items()), \
        "a fresh generator differs from the exported one"
    trainer.start_from(source["state"], source["label"])
    for module in ("generator", "generator_ema"):
        for key, var in getattr(trainer.model, module).state_dict().items():
            assert np.array_equal(var.numpy(), state[key]), f"{module}.{key}"
    assert trainer.payload()["init_from"] == f"pretrained model {name} ({shipped['root'] / (name + '.npz')})"


def test_a_run_or_checkpoint_is_a_source_too_and_a_mismatch_is_refused(shipped):
    run = shipped["runs"]["dcgan"]
    ema = ckpt.load_checkpoint(run)["networks"]["generator_ema"]
    for source in (str(run), str(ckpt.resolve(run)), ("dc", run.parent)):
        found = pretrained.generator_source(*source) if isinstance(source, tuple) else \
            pretrained.generator_source(source)
        assert found["arch"] == "dcgan" and found["size"] == 32
        assert all(np.array_equal(found["state"][key], ema[key]) for key in ema)
    source = pretrained.generator_source("tiny-sg", root=shipped["root"])
    with pytest.raises(ConfigError, match="a stylegan generator .* does not fit a dcgan run; pass --arch stylegan"):
        pretrained.check_compatible(source, load_config("dcgan", False, None, [TINY["dcgan"]]))
    wider = load_config("stylegan", False, None, [TINY["stylegan"], {"model": {"code_dim": 32}}])
    with pytest.raises(ConfigError, match=r"trained with model.code_dim=16 but this run has 32; "
                                          r"pass --set model.code_dim=16"):
        pretrained.check_compatible(source, wider)
    wgan = load_config("lsgan", False, None, [TINY["dcgan"], {"model": {"critic_norm": "batch"}}])
    pretrained.check_compatible(pretrained.generator_source(str(run)), wgan)   # one generator for the family


def test_train_init_from_starts_the_run_from_the_pretrained_weights(shipped, tmp_path):
    root = shipped["root"]
    _, state = pretrained.read_weights(root / "tiny-sg.npz")
    result = ok(run_script("train.py", shipped["lmdb"], *STYLEGAN_FLAGS, "--init-from", "tiny-sg", "--iters", "1",
                           "--lr", "1e-9", "--name", "ft", cwd=tmp_path, root=root))
    assert f"train: generator and its EMA start from the pretrained model tiny-sg ({root / 'tiny-sg.npz'}), 8 px" \
        in result.stderr
    document = ckpt.load_checkpoint(tmp_path / "checkpoint" / "ft")
    assert document["init_from"].startswith("pretrained model tiny-sg")
    for module in ("generator", "generator_ema"):
        for key, value in document["networks"][module].items():
            if key != "w_avg":   # the running average latent moves at every step
                assert np.abs(value - state[key]).max() < 1e-6, f"{module}.{key} moved by more than 1e-9 steps"

    refused(run_script("train.py", shipped["lmdb"], "--arch", "stylegan", "--init-from", "tiny-sg", "--iters", "1",
                       "--workers", "0", "--name", "bad", cwd=tmp_path, root=root),
            "--init-from's generator was trained with model.channels=[16, 16, 8, 8]")
    refused(run_script("train.py", shipped["lmdb"], *STYLEGAN_FLAGS, "--init-from", "tiny-sg", "--resume",
                       "--name", "ft", cwd=tmp_path, root=root), "--init-from starts a new run")


def test_export_refuses_a_model_over_the_size_budget_and_writes_nothing(shipped, tmp_path):
    root = copy_of(shipped["root"], tmp_path)
    with open(root / "large.bin", "wb") as handle:   # a sparse file of the whole budget
        handle.truncate(pretrained.BUDGET_BYTES - pretrained.folder_bytes(root) + 1000)
    before = {path.name: path.read_bytes() for path in root.iterdir() if path.name != "large.bin"}
    with pytest.raises(ConfigError, match=r"would bring .* over its 40 MB budget; remove a model"):
        pretrained.export(shipped["runs"]["stylegan"], "tiny-sg2", root, data="d", licence="l")
    assert {path.name: path.read_bytes() for path in root.iterdir() if path.name != "large.bin"} == before
    (root / "large.bin").unlink()
    pretrained.export(shipped["runs"]["stylegan"], "tiny-sg2", root, data="d", licence="l")
    assert pretrained.names(root) == ["tiny-sg", "tiny-dc", "tiny-sg2"]


def test_export_refuses_a_run_without_an_ema_generator_and_a_bad_name(shipped, tiny_lmdb, tmp_path):
    config = load_config("dcgan", False, None, [TINY["dcgan"], {"train": {"ema": 0.0}}])
    Trainer(config, tiny_lmdb, tmp_path / "checkpoint" / "raw", tmp_path / "sample", progress=False).train(1)
    with pytest.raises(ConfigError, match="holds no EMA generator"):
        pretrained.export(tmp_path / "checkpoint" / "raw", "raw", tmp_path / "p", data="d", licence="l")
    with pytest.raises(ConfigError, match="must be lower-case letters"):
        pretrained.export(shipped["runs"]["dcgan"], "../Up", tmp_path / "p", data="d", licence="l")
    assert not (tmp_path / "p").exists()


def test_every_model_in_the_shipped_manifest_loads_matches_its_checksum_and_generates_at_its_size():
    """Every model of the repository's pretrained/models.yaml, within the folder's budget."""
    root = pretrained.DEFAULT_FOLDER
    manifest = pretrained.read_manifest(root)
    assert pretrained.folder_bytes(root) <= pretrained.BUDGET_BYTES
    names = [item["name"] for item in manifest["models"]]
    assert manifest["default"] is None or manifest["default"] in names
    for item in manifest["models"]:
        assert pretrained.verified_file(item, root).name == item["file"]
        assert (root / item["card"]).is_file() and (root / item["grid"]).is_file(), item["name"]
        trained = pretrained.load_trained(item["name"], root=root)
        assert trained.size == item["size"] and trained.arch == item["arch"]
        images = synthesize(trained, random_z(2, trained.latent_dim, 0))
        assert images.shape == (2, 3, item["size"], item["size"]) and np.isfinite(images).all(), item["name"]


def test_evaluating_a_pretrained_model_writes_nothing_into_the_pretrained_folder(shipped, tmp_path):
    root = copy_of(shipped["root"], tmp_path)
    before = sorted(path.name for path in root.iterdir())
    result = ok(run_script("scripts/evaluate.py", shipped["lmdb"], "-g", "tiny-dc", "--n", 8, cwd=tmp_path, root=root))
    assert "swd_16" in result.stdout and "tiny-dc is a pretrained model" in result.stdout
    assert sorted(path.name for path in root.iterdir()) == before


def test_a_figure_of_one_seed_is_the_same_at_every_call():
    """A StyleGAN draws its noise maps itself: seeded like the latents, a seed's figures repeat."""
    generator = pretrained.load_trained("emoji-stylegan", root=pretrained.DEFAULT_FOLDER)
    first, again = (sample_grid(generator, 4, 2, seed=3)[0] for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert np.abs(sample_grid(generator, 4, 2, seed=4)[0] - first).max() > 0.1, "another seed, other images"
    np.testing.assert_array_equal(*(style_mixing_figure(generator, 2, 2, (0, 1), seed=3) for _ in range(2)))
