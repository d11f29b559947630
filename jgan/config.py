"""Configuration as data: `configs/<preset>.yaml`, overlaid by a user file, then by flags, then
checked against the schema of its architecture (jgan.schema).

Unknown keys are named with the nearest valid key; a wrong type or a value out of range is named
with what the key may be. Maps keyed by resolution (`progressive.batch`) and a loss or optimiser
of another name than the preset's are taken whole.
"""
import copy
import difflib
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from jgan import registry, schema
from jgan.errors import ConfigError


class YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading 5e-5 and 1e3 as numbers as YAML 1.2 does (YAML 1.1, which
    PyYAML follows, wants a dot: 5.0e-5); learning rates are written that way."""


YAMLLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                 list("-+0123456789"))


def load_yaml(text):
    return yaml.load(text, Loader=YAMLLoader)


def run_arch(run_dir):
    """The arch a run folder's config.yaml names (None without one)."""
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        return None
    return (yaml.safe_load(config.read_text()) or {}).get("arch")


def read_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        data = load_yaml(path.read_text())
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
    return isinstance(value, dict) and bool(value) and all(isinstance(k, int) for k in value)


def _nearest(key, choices):
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(choices)}"


def _replaces(old, new):
    """Whether `new` replaces `old` whole instead of being merged key by key: a resolution map, a
    value that is not a section, or a section of another `name` (loss, optim) with its own keys."""
    if not (isinstance(old, dict) and isinstance(new, dict)) or _is_resolution_map(old) or old == {}:
        return True
    return new.get("name", old.get("name")) != old.get("name")


def merge(base, update):
    """Overlay `update` on `base` in place (checked later, by `validate`)."""
    for key, value in update.items():
        if key in base and not _replaces(base[key], value):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def schema_of(arch):
    """The pydantic class that checks a configuration of `arch` (jgan.schema)."""
    entry = registry.get(arch)
    return entry.config or schema.from_preset(preset_of(arch), entry.progressive)


def validate(config):
    """`config` checked against its arch's schema, with every default filled in but the `model`
    section's, whose keys are the networks' arguments (a new dict); a ConfigError names the first
    wrong key, its value and what it may be."""
    model = schema_of(config.get("arch"))
    try:
        checked = model.model_validate(config)
    except ValidationError as error:
        raise ConfigError(_sentence(error.errors()[0], model, config)) from None
    return {**checked.model_dump(), "model": checked.model.model_dump(exclude_unset=True)}


def _sentence(error, model, config):
    """One pydantic error as a sentence naming the key, the value and what it may be."""
    if error["type"] == "value_error" and not error["loc"]:
        return str(error["ctx"]["error"])           # a rule between keys, already a sentence
    names, fields, field, value = [], model.model_fields, None, config
    for part in error["loc"]:
        if field is not None and part in schema.variants(field):
            fields = schema.variants(field)[part].model_fields
        elif fields is not None and part in fields:
            field, value = fields[part], value.get(part) if isinstance(value, dict) else None
            names.append(part)
            fields = getattr(field.annotation, "model_fields", None)
        elif error["type"] == "extra_forbidden":
            return f"unknown config key {'.'.join(names + [part])!r}{_nearest(part, fields)}"
        else:
            break                                   # inside a list or a map: name the whole value
    name = ".".join(names)
    if error["type"] == "missing":
        what = f" ({field.description}: {schema.allowed_values(field)})" if field.description else ""
        return f"config key {name} is missing; add it{what}"
    if schema.variants(field) and isinstance(value, dict):
        choices = ", ".join(schema.variants(field))
        return f"config key {name}.name must be one of {choices}, got {value.get('name')!r}"
    if fields is not None or schema.variants(field):
        return f"config key {name} must be a mapping of keys, got {value!r}"
    kind = f" ({type(value).__name__})" if error["type"].endswith(("_type", "_parsing")) else ""
    return f"config key {name} must be {schema.allowed_values(field)}, got {value!r}{kind}"


def add_missing_keys(config, defaults):
    """Give `config` every key of `defaults` it lacks (in place); sections are filled key by key."""
    for key, value in defaults.items():
        if key not in config:
            config[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(config[key], dict) and not _is_resolution_map(value) \
                and key != "loss":
            add_missing_keys(config[key], value)
    return config


def nested(dotted, value):
    """'section.key', value -> {section: {key: value}}."""
    for part in reversed(dotted.strip().split(".")):
        value = {part: value}
    return value


def parse_override(text):
    """`section.key=value` (value in YAML syntax) -> nested dict."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    try:
        value = load_yaml(raw) if raw else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r} has a value that is not valid YAML; quote it, e.g. "
                          f"{dotted}='\"{raw}\"'") from None
    return nested(dotted, value)


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
    return validate(config)


def save_config(config, path):
    Path(path).write_text(yaml.safe_dump(copy.deepcopy(config), sort_keys=False))
