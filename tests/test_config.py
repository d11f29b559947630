"""Configuration presets, overlays and their validation."""
import pytest

from jgan import registry
from jgan.config import load_config, merge, parse_override, preset, preset_of
from jgan.errors import ConfigError


@pytest.mark.parametrize("arch", registry.names())
def test_every_arch_has_a_preset_naming_itself(arch):
    assert preset_of(arch, has_cuda=False)["arch"] == arch
    assert preset_of(arch, has_cuda=True)["arch"] == arch


def test_paper_defaults_of_the_optimisers():
    assert preset("wgan-gp")["optim"] == {"name": "adam", "lr_g": 1e-4, "lr_d": 1e-4, "betas": [0.0, 0.9]}
    assert preset("wgan-gp")["train"]["n_critic"] == 5
    assert preset("dcgan")["optim"]["betas"] == [0.5, 0.999] and preset("dcgan")["optim"]["lr_g"] == 2e-4
    assert preset("wgan")["optim"]["name"] == "rmsprop" and preset("wgan")["optim"]["lr_d"] == 5e-5
    assert preset("wgan")["loss"]["clip"] == 0.01


def test_stylegan_uses_the_cpu_preset_without_cuda():
    assert registry.get("stylegan").preset_path(has_cuda=False).name == "stylegan-cpu.yaml"
    assert registry.get("stylegan").preset_path(has_cuda=True).name == "stylegan.yaml"
    assert preset("stylegan")["model"]["channels"][:5] == [512, 512, 512, 512, 256]


def test_unknown_key_is_named_with_the_nearest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.n_critc'.*did you mean 'n_critic'"):
        load_config("wgan-gp", overrides=[{"train": {"n_critc": 3}}])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"config key train.batch must be an integer of at least 1 or null, got 'big' \(str\)"):
        load_config("dcgan", overrides=[{"train": {"batch": "big"}}])


def test_ints_become_floats_where_the_preset_has_floats():
    config = load_config("wgan-gp", overrides=[{"optim": {"lr_g": 1}}, {"loss": {"gp_weight": 5}}])
    assert config["optim"]["lr_g"] == 1.0 and isinstance(config["optim"]["lr_g"], float)
    assert config["loss"]["gp_weight"] == 5.0


def test_a_different_loss_replaces_the_loss_parameters_with_its_defaults():
    config = load_config("stylegan", overrides=[{"loss": {"name": "r1"}}])
    assert config["loss"] == {"name": "r1", "gamma": 10.0, "every": 1}


def test_user_file_for_another_arch_is_refused(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("arch: dcgan\ntrain:\n  batch: 4\n")
    with pytest.raises(ConfigError, match="is for arch 'dcgan', not 'wgan-gp'"):
        load_config("wgan-gp", config_file=path)
    assert load_config("dcgan", config_file=path)["train"]["batch"] == 4


def test_invalid_yaml_and_missing_file_are_sentences(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("dcgan", config_file=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("dcgan", config_file=tmp_path / "nope.yaml")


def test_unknown_arch_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="choose one of dcgan, wgan, wgan-gp"):
        load_config("biggan")


def test_override_syntax():
    assert parse_override("model.ngf=32") == {"model": {"ngf": 32}}
    assert parse_override("progressive.batch={8: 4}") == {"progressive": {"batch": {8: 4}}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("model.ngf")


def test_resolution_maps_are_replaced_whole():
    config = merge(preset("stylegan"), {"progressive": {"batch": {8: 4, 16: 2}}})
    assert config["progressive"]["batch"] == {8: 4, 16: 2}


def test_the_fast_cpu_recipe_is_the_dcgan_preset_at_half_width_and_batch_32():
    config = load_config("dcgan", config_file=registry.CONFIG_DIR / "fast-cpu.yaml")
    paper = preset_of("dcgan")
    assert (config["model"]["ngf"], config["model"]["ndf"], config["train"]["batch"]) == (32, 32, 32)
    assert config["loss"] == paper["loss"] and config["optim"] == paper["optim"]
    assert config["model"]["size"] == 64
