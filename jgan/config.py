"""Configuration as data: `configs/<preset>.yaml`, overlaid by a user file, then by flags.

Every key a user gives must exist in the preset (unknown keys are named, with the nearest valid
key suggested) and have the preset's type. Maps keyed by resolution (`progressive.batch`) and the
parameters of a loss other than the preset's are taken whole.
"""
import copy
import difflib
from pathlib import Path

import yaml

from jgan import registry
from jgan.errors import ConfigError


def read_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML ({str(error).splitlines()[0]}); "
                          f"fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def preset(name):
    """The configuration of a preset in configs/ (a fresh copy)."""
    return read_yaml(registry.CONFIG_DIR / f"{name}.yaml")


def preset_of(arch, has_cuda=False):
    """The configuration `arch` trains with by default on this device (a fresh copy)."""
    return read_yaml(registry.get(arch).preset_path(has_cuda))


def _is_resolution_map(value):
    return isinstance(value, dict) and all(isinstance(k, int) for k in value)


def _nearest(key, choices):
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(choices)}"


def _coerce(name, default, value):
    """`value` converted to the type of `default`, or a ConfigError naming the key."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int):
        return value
    elif isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    elif isinstance(default, str) and isinstance(value, str):
        return value
    elif isinstance(default, list) and isinstance(value, (list, tuple)):
        return list(value)
    elif _is_resolution_map(default) and _is_resolution_map(value):
        return dict(value)
    raise ConfigError(f"config key {name} must be {type(default).__name__}, "
                      f"got {value!r} ({type(value).__name__})")


def merge(base, update, prefix=""):
    """Overlay `update` on `base` in place, checking keys and types against `base`."""
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key {name!r}{_nearest(key, base)}")
        if key == "loss" and isinstance(value, dict) and value.get("name", base[key]["name"]) != base[key]["name"]:
            base[key] = dict(value)
        elif isinstance(base[key], dict) and not _is_resolution_map(base[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {name} must be a mapping, got {value!r}")
            merge(base[key], value, prefix=f"{name}.")
        else:
            base[key] = _coerce(name, base[key], value)
    return base


def add_missing_keys(config, defaults):
    """Give `config` every key of `defaults` it lacks (in place); sections are filled key by key."""
    for key, value in defaults.items():
        if key not in config:
            config[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(config[key], dict) and not _is_resolution_map(value) \
                and key != "loss":
            add_missing_keys(config[key], value)
    return config


def parse_override(text):
    """`section.key=value` (value in YAML syntax) -> nested dict."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw else ""
    nested = value
    for part in reversed(dotted.strip().split(".")):
        nested = {part: nested}
    return nested


def load_config(arch, has_cuda=False, config_file=None, overrides=()):
    """Preset of `arch`, overlaid by `config_file` and by `overrides` (nested dicts), validated."""
    config = preset_of(arch, has_cuda)
    if config_file is not None:
        user = read_yaml(config_file)
        if user.get("arch", arch) != arch:
            raise ConfigError(f"config file {config_file} is for arch {user['arch']!r}, not {arch!r}; "
                              f"pass --arch {user['arch']} or another file")
        merge(config, user)
    for override in overrides:
        merge(config, override)
    return config


def save_config(config, path):
    Path(path).write_text(yaml.safe_dump(copy.deepcopy(config), sort_keys=False))
