"""Checkpoints: atomic files, the latest pointer, strict loading, clear refusals."""
import pickle

import numpy as np
import pytest

import jittor as jt
from jittor import nn

from jgan import checkpoint as ckpt
from jgan.errors import CheckpointError


def small_net(width=3):
    return nn.Sequential(nn.Linear(4, width), nn.BatchNorm1d(width), nn.Linear(width, 2))


def test_save_writes_a_numbered_file_and_points_latest_at_it(tmp_path):
    first = ckpt.save_checkpoint(tmp_path, 7, {"arch": "dcgan", "value": 1})
    second = ckpt.save_checkpoint(tmp_path, 12, {"arch": "dcgan", "value": 2})
    assert first.name == "0000007.jgan" and second.name == "0000012.jgan"
    assert (tmp_path / "latest").read_text().strip() == "0000012.jgan"
    assert ckpt.load_checkpoint(tmp_path)["value"] == 2
    assert ckpt.load_checkpoint(first)["value"] == 1
    assert [p.name for p in ckpt.numbered_checkpoints(tmp_path)] == ["0000007.jgan", "0000012.jgan"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 1, {"arch": "dcgan", "value": 1})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", disk_full)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 2, {"arch": "dcgan", "value": 2})
    monkeypatch.undo()
    assert ckpt.load_checkpoint(tmp_path)["value"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0000001.jgan", "latest"]


def test_truncated_and_foreign_files_are_refused_with_a_sentence(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 3, {"arch": "dcgan", "weights": np.ones(1000)})
    truncated = tmp_path / "truncated.jgan"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable jgan checkpoint.*truncated"):
        ckpt.load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(pickle.dumps({"generator": {}, "g_running": {}}))
    with pytest.raises(CheckpointError, match="not a jgan checkpoint.*convert_rosinality"):
        ckpt.load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        ckpt.load_checkpoint(tmp_path / "empty_run")


def test_latest_falls_back_to_the_newest_complete_file(tmp_path):
    ckpt.save_checkpoint(tmp_path, 5, {"arch": "dcgan", "value": 5})
    (tmp_path / "latest").write_text("0000009.jgan\n")
    assert ckpt.load_checkpoint(tmp_path)["value"] == 5


def test_module_state_round_trip_and_strict_shapes():
    source, target = small_net(), small_net()
    state = ckpt.module_state(source)
    ckpt.load_module_state(target, state, "generator")
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[name])
    with pytest.raises(CheckpointError, match="generator in this checkpoint does not fit.*shape of"):
        ckpt.load_module_state(small_net(width=5), state, "generator")
    with pytest.raises(CheckpointError, match="missing"):
        ckpt.load_module_state(small_net(), {k: v for k, v in state.items() if "0." not in k}, "generator")


def test_optimizer_moments_round_trip():
    net = small_net()
    optimizer = jt.optim.Adam(net.parameters(), 1e-3)
    x = jt.randn(6, 4)
    for _ in range(2):
        optimizer.step(net(x).sqr().mean())
    state = ckpt.optimizer_state(optimizer)
    assert state["n_step"] == 2 and set(state["groups"][0]) == {"values", "m"}
    fresh = jt.optim.Adam(net.parameters(), 1e-3)
    ckpt.load_optimizer_state(fresh, state)
    assert fresh.n_step == 2
    for saved, var in zip(state["groups"][0]["m"], fresh.param_groups[0]["m"]):
        np.testing.assert_array_equal(var.numpy(), saved)


def test_newest_run_filters_by_arch(tmp_path):
    for name, arch in (("a", "dcgan"), ("b", "stylegan")):
        ckpt.save_checkpoint(tmp_path / name, 1, {"arch": arch})
        (tmp_path / name / "config.yaml").write_text(f"arch: {arch}\n")
    assert ckpt.newest_run(tmp_path, ("stylegan",)).name == "b"
    assert ckpt.newest_run(tmp_path, ("dcgan",)).name == "a"
    with pytest.raises(CheckpointError, match="no wgan run found"):
        ckpt.newest_run(tmp_path, ("wgan",))


def version_1(path):
    """Rewrite a checkpoint as jgan's format 1 wrote it: `fixed_z`, and no model.upsample,
    model.critic_norm or train.ema_rampup in its configuration."""
    document = pickle.loads(path.read_bytes())
    document["version"] = 1
    document["fixed_z"] = document.pop("sample_inputs")
    for section, key in (("model", "upsample"), ("model", "critic_norm"), ("train", "ema_rampup")):
        del document["config"][section][key]
    path.write_bytes(pickle.dumps(document))


def test_a_version_1_checkpoint_resumes_and_generates_with_the_network_it_was_trained_with(tiny_lmdb, tmp_path):
    from jgan.config import load_config
    from jgan.generation import load_trained
    from jgan.networks.dcgan import NearestUpsample
    from jgan.training import Trainer
    config = load_config("wganp", overrides=[{"model": {"size": 16, "ngf": 4, "ndf": 4, "nz": 8},
                                              "train": {"batch": 4, "num_workers": 0, "n_sample": 4, "n_critic": 1}}])
    trainer = Trainer(config, tiny_lmdb, tmp_path / "run", tmp_path / "sample", progress=False)
    path = trainer.train(2)
    version_1(path)
    document = ckpt.load_checkpoint(path)
    assert document["version"] == ckpt.VERSION
    assert document["config"]["model"]["upsample"] == "resize" and document["config"]["train"]["ema_rampup"] == 0
    np.testing.assert_array_equal(document["sample_inputs"], trainer.sample_inputs)
    generator = load_trained(path)
    assert any(isinstance(m, NearestUpsample) for m in generator.module.modules()), "WGANP resizes"
    resumed = Trainer(document["config"], tiny_lmdb, tmp_path / "run", tmp_path / "sample", progress=False)
    resumed.restore(document)
    assert resumed.train(3).name == "0000003.jgan"


# ----- bounded disk use: train.keep --------------------------------------------------------------
def test_keep_spares_the_newest_and_the_milestones_and_latest_never_names_a_pruned_file(tmp_path):
    for step in range(1, 8):
        ckpt.save_checkpoint(tmp_path, step, {"arch": "dcgan", "value": step}, keep=2, milestone=step == 3)
        assert ckpt.load_checkpoint(tmp_path)["value"] == step
    assert [p.name for p in ckpt.numbered_checkpoints(tmp_path)] == ["0000003.jgan", "0000006.jgan", "0000007.jgan"]


def test_keep_0_keeps_every_checkpoint(tmp_path):
    for step in range(1, 5):
        ckpt.save_checkpoint(tmp_path, step, {"arch": "dcgan"}, keep=0)
    assert len(ckpt.numbered_checkpoints(tmp_path)) == 4


def test_nothing_is_pruned_before_the_new_checkpoint_is_on_disk(tmp_path, monkeypatch):
    for step in (1, 2):
        ckpt.save_checkpoint(tmp_path, step, {"arch": "dcgan", "value": step}, keep=2)

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", disk_full)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 3, {"arch": "dcgan", "value": 3}, keep=2)
    assert [p.name for p in ckpt.numbered_checkpoints(tmp_path)] == ["0000001.jgan", "0000002.jgan"]
    assert ckpt.load_checkpoint(tmp_path)["value"] == 2


def test_a_resumed_run_takes_its_learning_rates_from_its_configuration_not_the_checkpoint(tiny_lmdb, tmp_path):
    from jgan.config import load_config
    from jgan.training import Trainer
    tiny = {"model": {"size": 16, "ngf": 4, "ndf": 4, "nz": 8},
            "train": {"batch": 4, "num_workers": 0, "n_sample": 4}}
    trainer = Trainer(load_config("dcgan", overrides=[tiny]), tiny_lmdb, tmp_path / "run", tmp_path / "sample",
                      progress=False)
    document = ckpt.load_checkpoint(trainer.train(2))
    lowered = load_config("dcgan", overrides=[tiny, {"optim": {"lr_g": 5e-5, "lr_d": 1e-5}}])
    resumed = Trainer(lowered, tiny_lmdb, tmp_path / "run", tmp_path / "sample", progress=False)
    resumed.restore(document)
    optimizers = resumed.model.optimizers()
    assert (optimizers["generator"].lr, optimizers["discriminator"].lr) == (5e-5, 1e-5)
    assert optimizers["generator"].n_step == 2
