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
    config = load_config("dcgan", overrides=[{"loss": {"name": "r1"}}])
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
    assert parse_override("optim.lr_d=5e-5") == {"optim": {"lr_d": 5e-5}}, "a number without a dot"
    assert parse_override("train.iters=1E3") == {"train": {"iters": 1000.0}}
    assert parse_override("train.metrics=e5") == {"train": {"metrics": "e5"}}
    assert parse_override("progressive.batch={8: 4}") == {"progressive": {"batch": {8: 4}}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("model.ngf")


def test_resolution_maps_are_replaced_whole():
    config = merge(preset("stylegan"), {"progressive": {"batch": {8: 4, 16: 2}}})
    assert config["progressive"]["batch"] == {8: 4, 16: 2}


def test_the_fast_cpu_recipe_is_the_dcgan_preset_at_half_width_and_batch_32_with_a_ramped_ema_and_stages():
    config = load_config("dcgan", config_file=registry.CONFIG_DIR / "fast-cpu.yaml")
    paper = preset_of("dcgan")
    assert (config["model"]["ngf"], config["model"]["ndf"], config["train"]["batch"]) == (32, 32, 32)
    assert (config["train"]["ema"], config["train"]["ema_rampup"]) == (0.999, 0.05)
    assert (paper["train"]["ema"], paper["train"]["ema_rampup"], paper["train"]["augment"]) == (0.0, 0.0, "")
    assert config["train"]["augment"] == ""
    paper_config = load_config("dcgan")
    assert config["loss"] == paper_config["loss"] and config["optim"] == paper_config["optim"]
    assert config["model"]["size"] == 64
    stages = [(stage["images"], stage["lr"], stage["batch"]) for stage in config["train"]["stages"]]
    assert stages == [(256000, 5e-5, None), (320000, 1.5e-5, None), (384000, None, 64), (480000, None, 128),
                      (704000, 1e-5, None)], "the measured 2-hour schedule (README, Two hours: the stages)"
    assert paper_config["train"]["stages"] == []


def test_the_stylegan_cpu_preset_and_the_demo_recipe_hold_the_measured_settings_the_demo_up_to_16_px():
    cpu = preset_of("stylegan", has_cuda=False)
    demo = load_config("stylegan", config_file=registry.CONFIG_DIR / "stylegan-demo.yaml")
    for config in cpu, demo:
        assert config["model"]["channels"][:3] == [64, 64, 64] and config["model"]["code_dim"] == 128
        assert (config["loss"]["name"], config["loss"]["gamma"]) == ("r1", 1.0)
        assert (config["train"]["ema"], config["train"]["ema_rampup"]) == (0.999, 0.05)
        assert config["optim"]["lr_g"] == config["optim"]["lr_d"] == 1e-3
    assert cpu["train"]["batch"] is None and set(cpu["progressive"]["batch"].values()) == {8}
    assert (cpu["progressive"]["max_size"], cpu["loss"]["every"]) == (64, 4)
    assert demo["train"]["batch"] == 8 and demo["loss"]["every"] == 1
    assert (demo["progressive"]["init_size"], demo["progressive"]["max_size"]) == (8, 16)


# ----- the schema (jgan.schema) ------------------------------------------------------------------
@pytest.mark.parametrize("arch", registry.names())
@pytest.mark.parametrize("has_cuda", [False, True])
def test_every_preset_holds_to_its_schema(arch, has_cuda):
    config = load_config(arch, has_cuda)
    assert config["arch"] == arch and config["train"]["keep"] == 10


@pytest.mark.parametrize("override, message", [
    ({"train": {"ema": 1.5}}, "config key train.ema must be a number in [0, 1), got 1.5"),
    ({"train": {"seed": -3}}, "config key train.seed must be an integer from 0 to 2147483647, got -3"),
    ({"train": {"log_every": 0}}, "config key train.log_every must be an integer of at least 1, got 0"),
    ({"train": {"keep": -1}}, "config key train.keep must be an integer of at least 0, got -1"),
    ({"train": {"flip": 1}}, "config key train.flip must be true or false, got 1 (int)"),
    ({"optim": {"lr_g": -0.1}}, "config key optim.lr_g must be a number in (0, 1], got -0.1"),
    ({"optim": {"lr_d": float("nan")}}, "config key optim.lr_d must be a number in (0, 1], got nan"),
    ({"optim": {"betas": [2, 3]}}, "config key optim.betas must be two numbers in [0, 1), got [2, 3]"),
    ({"model": {"ngf": 0}}, "config key model.ngf must be an integer of at least 1, got 0"),
    ({"model": {"size": 8}}, "config key model.size must be a power of two from 16 to 1024, got 8"),
    ({"model": {"upsample": "pixelshuffle"}}, "config key model.upsample must be one of transposed, resize, got 'pixelshuffle'"),
    ({"model": 3}, "config key model must be a mapping of keys, got 3"),
    ({"loss": {"name": "hinge"}}, "config key loss.name must be one of bce, wgan, wgan-gp, lsgan, wgan-div, r1, got 'hinge'"),
    ({"loss": {"gp_weight": -1}}, "config key loss.gp_weight must be a number of at least 0, got -1"),
    ({"loss": {"name": "r1", "every": 0}}, "config key loss.every must be an integer of at least 1, got 0"),
    ({"optim": {"name": "rmsprop"}}, "config key optim.lr_g is missing; add it (generator learning rate: a number in (0, 1])"),
    ({"train": {"batch": None}}, "config key train.batch is null, which only a progressive architecture takes"),
    ({"sampling": {"n": 1}}, "unknown config key 'sampling'"),
    ({"train": {"stages": [{"images": 100, "lr": 1e-4}, {"images": 50, "batch": 8}]}},
     "train.stages begin at [100, 50] images; list them in increasing order, each at its own count"),
    ({"train": {"stages": [{"images": 100}]}}, "the stage at 100 images changes nothing; give it an lr or a batch"),
    ({"train": {"stages": [{"images": 100, "lr": 2}]}}, "config key train.stages"),
])
def test_a_value_out_of_range_is_named_with_its_key_and_range(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("wgan-gp", overrides=[override])
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("arch, override, message", [
    ("stylegan", {"progressive": {"mixing": 2}}, "config key progressive.mixing must be a number in [0, 1], got 2"),
    ("stylegan", {"progressive": {"init_size": 32, "max_size": 16}},
     "progressive.init_size 32 is larger than progressive.max_size 16; lower --init-size or raise --max-size"),
    ("stylegan", {"model": {"channels": [16, 16]}, "progressive": {"init_size": 8, "max_size": 16}},
     "model.channels has 2 widths, enough to grow to 8 px, not to progressive.max_size 16"),
    ("stylegan", {"progressive": {"batch": {12: 4}}},
     "config key progressive.batch must be a map of power-of-two sizes to batch sizes of at least 1, got {12: 4}"),
    ("stylegan", {"model": {"style_gain": -1}}, "config key model.style_gain must be a number of at least 0, got -1"),
    ("stylegan", {"model": {"critic_channels": [16, 16]}},
     "model.critic_channels has 2 widths and model.channels 6; give one discriminator width per resolution, or null"),
    ("pggan", {"model": {"stddev_group": 0}}, "config key model.stddev_group must be an integer of at least 1 or null, got 0"),
    ("pggan", {"progressive": {"mixing": 0.5}}, "unknown config key 'progressive.mixing'"),
    ("cyclegan", {"train": {"stages": [{"images": 100, "lr": 1e-4}]}},
     "cyclegan schedules its own learning rate (optim.decay_start); drop train.stages"),
])
def test_each_family_declares_its_own_keys_and_rules(arch, override, message):
    with pytest.raises(ConfigError) as error:
        load_config(arch, overrides=[override])
    assert message in str(error.value)


def test_a_family_that_declares_no_schema_is_held_to_its_presets_keys_and_types(tmp_path):
    preset_file = tmp_path / "toy.yaml"
    preset_file.write_text("arch: toy\nmodel: {width: 8, act: relu}\nloss: {name: bce}\n"
                           "optim: {name: adam, lr_g: 0.001, lr_d: 0.001}\ntrain: {batch: 4, iters: 5}\n")
    registry.register(registry.Arch("toy", "unused:Model", preset=str(preset_file)))
    try:
        config = load_config("toy", overrides=[{"model": {"width": 16}}])
        assert config["model"] == {"width": 16, "act": "relu"} and config["train"]["log_every"] == 10
        with pytest.raises(ConfigError, match=r"config key model.width must be an integer, got 'wide' \(str\)"):
            load_config("toy", overrides=[{"model": {"width": "wide"}}])
        with pytest.raises(ConfigError, match="config key train.iters must be an integer of at least 1, got 0"):
            load_config("toy", overrides=[{"train": {"iters": 0}}])
    finally:
        registry.unregister("toy")


def test_a_resolution_map_and_a_loss_of_another_name_are_taken_whole():
    config = load_config("stylegan", overrides=[{"progressive": {"batch": {8: 4, 16: 2}}},
                                                {"loss": {"name": "wgan-gp", "gp_weight": 5}}])
    assert config["progressive"]["batch"] == {8: 4, 16: 2}
    assert config["loss"] == {"name": "wgan-gp", "gp_weight": 5.0, "drift": 0.0}


def test_an_override_whose_value_is_not_yaml_is_a_sentence():
    with pytest.raises(ConfigError, match="has a value that is not valid YAML"):
        parse_override("train.metrics=[swd")


def test_a_config_file_reads_exponents_without_a_dot_as_numbers(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("optim:\n  lr_g: 1e-3\n  lr_d: +25e-5\n")
    optim = load_config("dcgan", False, path, [])["optim"]
    assert (optim["lr_g"], optim["lr_d"]) == (1e-3, 2.5e-4)


def test_a_progressive_run_takes_stages():
    config = load_config("stylegan", overrides=[{"train": {"stages": [{"images": 100, "lr": 1e-4}]}}])
    assert config["train"]["stages"] == [{"images": 100, "lr": 1e-4, "batch": None}]


def test_the_fast_stylegan_recipe_is_the_measured_one_at_64_px_from_the_first_step():
    config = load_config("stylegan", config_file=registry.CONFIG_DIR / "stylegan-fast-cpu.yaml")
    model, grow = config["model"], config["progressive"]
    assert (model["channels"], model["code_dim"], model["style_gain"]) == ([128, 128, 64, 32, 16], 128, 0.0)
    assert (model["n_mlp"], grow["mixing"]) == (2, 0.0), "stylegan2-ada's mapping depth and no mixing for small data"
    assert (grow["init_size"], grow["max_size"], config["train"]["batch"]) == (64, 64, 32)
    assert (config["loss"]["name"], config["loss"]["gamma"], config["loss"]["every"]) == ("r1", 10.0, 4)
    assert (config["optim"]["lr_g"], config["optim"]["lr_d"], config["train"]["ema_rampup"]) == (2e-3, 2e-3, 0.05)
    assert config["train"]["stages"] == [{"images": 160000, "lr": 7e-4, "batch": None}]
    assert load_config("stylegan")["model"]["style_gain"] == 1.0, "the presets keep rosinality's initialisation"
