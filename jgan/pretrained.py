"""Pretrained generators shipped with jgan in `pretrained/`, and how a run becomes one.

A shipped model is three files and a manifest entry:
  * `NAME.npz`: the EMA generator's weights alone (float32, no discriminator, no optimiser
    moments) and a JSON record of what builds it (arch, `model` section, resolution level and
    fade-in, step, images shown), read with `numpy.load(allow_pickle=False)`: loading runs no code;
  * `NAME.md`: its model card (data, licence of the data, recipe, images shown, training time, SWD);
  * `NAME.png`: the card's sample grid;
  * an entry in `models.yaml` with the file's sha256 and size, checked before every load.
`models.yaml`'s `default` names the model generate.py uses when there is no run to draw from.

The folder is the repository's `pretrained/`, or the one $JGAN_PRETRAINED names. All of it is kept
within `BUDGET_BYTES` (export refuses a model that would exceed it). Importing this module and
reading the manifest import no Jittor.
"""
import datetime
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import yaml

from jgan import registry
from jgan.config import run_arch
from jgan.errors import CheckpointError, ConfigError

FORMAT = "jgan-pretrained"
VERSION = 1
SUFFIX = ".npz"
MANIFEST = "models.yaml"
META_KEY = "__meta__"           # the JSON record inside NAME.npz (weights are keyed by state-dict name)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # every entry's date in NAME.npz: the zip format's earliest
BUDGET_BYTES = 40 * 10 ** 6     # all of pretrained/, every file counted
ENV = "JGAN_PRETRAINED"
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "pretrained"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MANIFEST_HEADER = ("# Pretrained generators shipped with jgan (written by scripts/export_pretrained.py).\n"
                   "# default: the model generate.py uses when checkpoint/ holds no run (null: none).\n"
                   "# Each entry: its weights file with sha256 and bytes, checked before every load, and what its\n"
                   "# model card says. swd is x1e3 on swd_n generated vs swd_n real images.\n")


def _checkpoint():
    """jgan.checkpoint, imported on first use: it imports Jittor, which jgan.runtime.init starts."""
    from jgan import checkpoint
    return checkpoint


def folder(root=None):
    """The pretrained folder: `root`, else $JGAN_PRETRAINED, else the repository's pretrained/."""
    return Path(root or os.environ.get(ENV) or DEFAULT_FOLDER)


# ----- the manifest ------------------------------------------------------------------------------
def read_manifest(root=None):
    """{"default": NAME or None, "models": [entry, ...]}; an empty manifest when the file is absent."""
    path = folder(root) / MANIFEST
    if not path.is_file():
        return {"default": None, "models": []}
    try:
        manifest = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise CheckpointError(f"{path} is not valid YAML ({type(error).__name__}); restore it with "
                              f"`git checkout {path}`") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models") or [], list):
        raise CheckpointError(f"{path} must hold `default:` and a list `models:`; restore it with "
                              f"`git checkout {path}`")
    return {"default": manifest.get("default"), "models": list(manifest.get("models") or [])}


def manifest_text(manifest):
    return MANIFEST_HEADER + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)


def names(root=None):
    return [entry["name"] for entry in read_manifest(root)["models"]]


def entry(name, root=None):
    """The manifest entry of model `name`; a CheckpointError naming the models there are."""
    manifest = read_manifest(root)
    for item in manifest["models"]:
        if item.get("name") == name:
            return item
    known = ", ".join(item.get("name", "?") for item in manifest["models"])
    where = folder(root) / MANIFEST
    raise CheckpointError(f"there is no pretrained model {name!r} in {where} "
                          f"({'it lists ' + known if known else 'it lists none yet'}); "
                          f"`python generate.py --list` lists the runs and pretrained models")


def default_name(root=None, archs=None):
    """The manifest's default model, or None. With `archs`, the default when it is of one of those
    archs, else the first model that is (e.g. the pretrained StyleGAN for style mixing)."""
    manifest = read_manifest(root)
    if archs is None:
        return manifest["default"]
    fitting = [item["name"] for item in manifest["models"] if item.get("arch") in archs]
    return manifest["default"] if manifest["default"] in fitting else next(iter(fitting), None)


# ----- files and checksums -----------------------------------------------------------------------
def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_file(item, root=None):
    """The weights file of a manifest entry, once its size and sha256 match the manifest's."""
    path = folder(root) / item["file"]
    if not path.is_file():
        raise CheckpointError(f"the weights of pretrained model {item['name']}, {path}, are missing; "
                              f"restore them with `git checkout {path}`")
    if path.stat().st_size != item.get("bytes") or sha256(path) != item.get("sha256"):
        raise CheckpointError(f"{path} does not match the sha256 that {folder(root) / MANIFEST} records for "
                              f"{item['name']} (the file is damaged or was changed); restore it with "
                              f"`git checkout {path}` or export the model again")
    return path


def weights_bytes(meta, state):
    """NAME.npz as bytes: the weights by state-dict name and the JSON record `meta`. Unlike
    numpy.savez_compressed, the archive's entries are sorted and carry a fixed date, so the same
    weights always give the same file and sha256."""
    arrays = {META_KEY: np.array(json.dumps(meta, sort_keys=True)), **state}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.asarray(arrays[key]), allow_pickle=False)
    return buffer.getvalue()


def read_weights(path):
    """(meta, state) of a NAME.npz file; a CheckpointError for one that is not a pretrained model."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive[META_KEY]))
            state = {key: archive[key] for key in archive.files if key != META_KEY}
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise CheckpointError(f"{path} is not a readable jgan pretrained model ({type(error).__name__}); "
                              f"restore it with `git checkout {path}`") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a jgan pretrained model; pass a checkpoint or a name from "
                              f"`python generate.py --list`")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer jgan (format {meta['version']}); upgrade jgan")
    return meta, state


# ----- naming a generator ------------------------------------------------------------------------
def locate(source, checkpoint_dir=None, root=None):
    """What `source` names, as ("checkpoint", path) or ("pretrained", model name or .npz path):
    an existing file or folder; `pretrained/NAME`; a bare NAME: a run in `checkpoint_dir` (when
    given), else a pretrained model. Other paths are checkpoints (loading them says what is wrong)."""
    text = str(source)
    path = Path(text)
    if path.exists():
        return ("pretrained", path) if path.is_file() and path.suffix == SUFFIX else ("checkpoint", path)
    prefix = next((p for p in ("pretrained/", f"{folder(root)}/") if text.startswith(p)), None)
    if prefix is not None and "/" not in text[len(prefix):]:
        return "pretrained", text[len(prefix):]
    if "/" in text or path.suffix:
        return "checkpoint", path
    if checkpoint_dir is not None and (Path(checkpoint_dir) / text).is_dir():
        return "checkpoint", Path(checkpoint_dir) / text
    return "pretrained", text


def load_weights(source, root=None):
    """(name, path, meta, state) of pretrained model `source` (a name or a .npz path); a listed
    model's file is checked against the manifest first."""
    if isinstance(source, Path):
        listed = [item for item in read_manifest(source.parent)["models"] if item.get("file") == source.name]
        if listed:
            return load_weights(listed[0]["name"], source.parent)
        return source.stem, source, *read_weights(source)
    item = entry(source, root)
    path = verified_file(item, root)
    return item["name"], path, *read_weights(path)


def build_generator(meta, state, path):
    """The generator module that `meta` describes, holding `state`, in eval mode."""
    generator = registry.get(meta["arch"]).model_class().build_generator(meta["model"])
    _checkpoint().load_module_state(generator, state, f"generator of {path}")
    generator.eval()
    return generator


def load_trained(source, ema=True, root=None):
    """A pretrained model (name, or .npz path) as a jgan.generation.TrainedGenerator."""
    from jgan.generation import TrainedGenerator
    name, path, meta, state = load_weights(source, root)
    if not ema:
        raise ConfigError(f"pretrained model {name} holds only its EMA generator; drop --no-ema")
    arch = registry.get(meta["arch"])
    return TrainedGenerator(build_generator(meta, state, path), arch.name, arch.latent_size(meta["model"]),
                            meta["level"], meta["alpha"], str(path), None, meta["step"], name=name)


# ----- the generator weights a new run starts from (train.py --init-from) ------------------------
def generator_source(source, checkpoint_dir="checkpoint", root=None):
    """{"arch", "model", "state", "label", "size"} of the generator `source` names: a pretrained
    model, a run or a checkpoint file (its EMA generator when it has one)."""
    kind, where = locate(source, checkpoint_dir, root)
    if kind == "pretrained":
        name, path, meta, state = load_weights(where, root)
        return {"arch": meta["arch"], "model": meta["model"], "state": state,
                "label": f"pretrained model {name} ({path})", "size": 4 * 2 ** meta["level"]}
    from jgan.generation import reached_phase, sampling_key
    document = _checkpoint().load_checkpoint(where)
    arch = registry.get(document["arch"])
    if arch.translates:
        raise ConfigError(f"{document['path']} holds no generator of latents to start from; pass a run or "
                          f"pretrained model of {', '.join(registry.names(translates=False))}")
    key = sampling_key(document)
    return {"arch": arch.name, "model": document["config"]["model"], "state": document["networks"][key],
            "label": f"{key.replace('_', ' ')} of {document['path']}", "size": reached_phase(document).size}


def check_compatible(source, config):
    """Refuse to start a run of `config` from `source`'s generator unless both are of one model
    class (a DCGAN-family generator fits every DCGAN-family arch) with the same `model` section."""
    mine, theirs = registry.get(config["arch"]), registry.get(source["arch"])
    if mine.model_class() is not theirs.model_class():
        raise ConfigError(f"--init-from names a {theirs.name} generator ({source['label']}), which does not fit "
                          f"a {mine.name} run; pass --arch {theirs.name}")
    for key in sorted(set(source["model"]) | set(config["model"])):
        want, have = source["model"].get(key), config["model"].get(key)
        if want != have:
            raise ConfigError(f"--init-from's generator was trained with model.{key}={json.dumps(want)} but this "
                              f"run has {json.dumps(have)}; pass --set model.{key}={json.dumps(want)} (the model "
                              f"section must match)")


# ----- export ------------------------------------------------------------------------------------
def training_seconds(run_dir):
    """The wall-clock training time of a run from its log.jsonl: each process's last `seconds`,
    summed over the processes (a resumed run starts counting again); None without a log."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return None
    total, last = 0.0, 0.0
    for line in path.read_text().splitlines():
        try:
            seconds = float(json.loads(line)["seconds"])
        except (ValueError, KeyError, TypeError):
            continue
        if seconds < last:
            total += last
        last = seconds
    return total + last


def duration(seconds):
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def folder_bytes(root, replaced=()):
    """Bytes of every file under the folder, but those named in `replaced`."""
    root = Path(root)
    return sum(path.stat().st_size for path in root.rglob("*")
               if path.is_file() and path.relative_to(root).as_posix() not in replaced) if root.is_dir() else 0


def export(run, name, root=None, *, data, licence, recipe=None, commit=None, training_time=None,
           swd=None, lmdb=None, n=2048, seed=0, default=False, budget=BUDGET_BYTES):
    """Turn a run's (or checkpoint's) EMA generator into pretrained model `name` in the folder:
    NAME.npz, its card NAME.md with the grid NAME.png, and its manifest entry (set as the default
    with `default`). SWD x1e3 is `swd` as given, or measured on `n` vs `n` images of `lmdb`.
    Nothing is written when the folder would exceed `budget` bytes. Returns the entry."""
    from jgan.generation import TrainedGenerator, reached_phase, sample_grid

    if not _NAME.match(name):
        raise ConfigError(f"--name {name!r} must be lower-case letters, digits, '.', '_' or '-' (at most 64), "
                          f"starting with a letter or digit")
    if swd is not None and lmdb is not None:
        raise ConfigError("pass either --swd (a measured value) or --lmdb (measure it), not both")
    root = folder(root)
    document = _checkpoint().load_checkpoint(run)
    arch = registry.get(document["arch"])
    if arch.translates:
        raise ConfigError(f"{document['path']} is a {arch.name} run; pretrained models are generators of latents "
                          f"for now ({', '.join(registry.names(translates=False))})")
    if "generator_ema" not in document["networks"]:
        raise ConfigError(f"{document['path']} holds no EMA generator (train.ema was 0); a pretrained model ships "
                          f"EMA weights: train with --ema 0.999")
    config = document["config"]
    phase = reached_phase(document)
    state = {key: np.asarray(value, np.float32) if np.issubdtype(np.asarray(value).dtype, np.floating)
             else np.asarray(value) for key, value in document["networks"]["generator_ema"].items()}
    meta = {"format": FORMAT, "version": VERSION, "name": name, "arch": arch.name, "model": config["model"],
            "level": phase.level, "alpha": float(phase.alpha), "step": document["step"],
            "images": document["images"]}
    weights = weights_bytes(meta, state)
    generator = TrainedGenerator(build_generator(meta, state, document["path"]), arch.name,
                                 arch.latent_size(config["model"]), phase.level, phase.alpha, document["path"],
                                 None, document["step"], name=name)
    _, grid_image = sample_grid(generator, 64, 8, seed)
    grid_png = png_bytes(grid_image)
    swd_result = None
    if lmdb is not None:
        from jgan import metrics
        swd_result = metrics.evaluate(generator, lmdb, metrics=("swd",), n=n, seed=seed)
        swd = round(swd_result["swd"], 2)
        n = swd_result["swd_images"]
    if training_time is None:
        seconds = training_seconds(Path(document["path"]).parent)
        training_time = f"{duration(seconds)} wall-clock (log.jsonl)" if seconds is not None else "not recorded"
    item = {"name": name, "file": f"{name}{SUFFIX}", "sha256": hashlib.sha256(weights).hexdigest(),
            "bytes": len(weights), "arch": arch.name, "size": phase.size,
            "parameters": int(sum(v.size for k, v in state.items() if k != "w_avg")),
            "data": data, "data_licence": licence, "recipe": recipe, "commit": commit,
            "step": document["step"], "images_shown": document["images"], "training_time": training_time,
            "swd": swd, "swd_n": n if swd is not None else None, "card": f"{name}.md", "grid": f"{name}.png",
            "exported": datetime.date.today().isoformat()}
    card = card_text(item, config, phase.alpha, swd_result).encode()
    manifest = read_manifest(root)
    manifest["models"] = [m for m in manifest["models"] if m.get("name") != name] + [item]
    if default:
        manifest["default"] = name
    manifest_bytes = manifest_text(manifest).encode()
    files = {item["file"]: weights, item["card"]: card, item["grid"]: grid_png, MANIFEST: manifest_bytes}
    total = folder_bytes(root, replaced=set(files)) + sum(map(len, files.values()))
    if total > budget:
        raise ConfigError(f"exporting {name} ({len(weights) / 1e6:.1f} MB of weights) would bring {root} to "
                          f"{total / 1e6:.1f} MB, over its {budget / 1e6:g} MB budget; remove a model from "
                          f"{root} and its {MANIFEST}, or export a smaller one")
    root.mkdir(parents=True, exist_ok=True)
    for file_name, content in files.items():      # the manifest last: it names only files on disk
        _checkpoint()._atomic_write(root / file_name, content)
    return item


def png_bytes(array):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def card_text(item, config, alpha, swd_result=None):
    """The model card NAME.md of a manifest entry."""
    fading = f", fading in (alpha {alpha:.2f})" if alpha < 1 else ""
    if item["swd"] is None:
        swd = "not measured"
    else:
        levels = ", ".join(f"{key[4:]} px {value:.1f}" for key, value in (swd_result or {}).items()
                           if key.startswith("swd_") and key[4:].isdigit())
        swd = f"{item['swd']:.1f} ({item['swd_n']:,} generated vs {item['swd_n']:,} real images" + \
              (f"; per level: {levels}" if levels else "") + ")"
    rows = [("architecture", f"{item['arch']}, {item['size']} px{fading}"),
            ("weights", f"`{item['file']}`: the EMA generator alone, float32, {item['parameters']:,} parameters, "
                        f"{item['bytes'] / 1e6:.2f} MB"),
            ("sha256", f"`{item['sha256']}`"),
            ("data", item["data"]), ("licence of the data", item["data_licence"]),
            ("recipe", f"`{item['recipe']}`" if item["recipe"] else "not recorded; the configuration is below"),
            ("trained at commit", item["commit"] or "not recorded"),
            ("images shown", f"{item['images_shown']:,} (step {item['step']:,})"),
            ("training time", item["training_time"]), ("SWD ×1e3", swd), ("exported", item["exported"])]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return (f"# {item['name']}\n\n"
            f"`python generate.py -g {item['name']}` draws from it; `jgan.load_generator(\"{item['name']}\")` "
            f"returns it; `python train.py LMDB --init-from {item['name']}` fine-tunes it.\n\n"
            f"![64 samples, seed 0]({item['grid']})\n\n| | |\n|---|---|\n{table}\n\n"
            f"## Configuration of the run\n\n```yaml\n{yaml.safe_dump(config, sort_keys=False)}```\n")


# ----- listing -----------------------------------------------------------------------------------
def run_rows(checkpoint_dir):
    """(name, arch, latest checkpoint) of every run folder under `checkpoint_dir`, by name."""
    root = Path(checkpoint_dir)
    rows = []
    for run_dir in sorted(root.iterdir()) if root.is_dir() else []:
        files = _checkpoint().numbered_checkpoints(run_dir) if run_dir.is_dir() else []
        if files:
            latest = run_dir / _checkpoint().LATEST
            name = latest.read_text().strip() if latest.is_file() else files[-1].name
            rows.append((run_dir.name, run_arch(run_dir) or "?", str(run_dir / name)))
    return rows


def shown(path):
    """`path` relative to the working directory when it is under it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def listing(checkpoint_dir="checkpoint", root=None):
    """generate.py --list: the runs and the pretrained models, as lines of text."""
    lines = [f"runs in {checkpoint_dir}/:"]
    lines += [f"  {name}  {arch}  {path}" for name, arch, path in run_rows(checkpoint_dir)] or ["  (none)"]
    manifest = read_manifest(root)
    lines.append(f"pretrained models in {shown(folder(root))}/ ({MANIFEST}):")
    for item in manifest["models"]:
        swd = f"SWD {item['swd']:.1f}" if item.get("swd") is not None else "SWD not measured"
        default = "  (default)" if item.get("name") == manifest["default"] else ""
        lines.append(f"  {item.get('name')}  {item.get('arch')}  {item.get('size')} px  {swd}  "
                     f"{item.get('images_shown', 0):,} images shown  {item.get('file')}{default}")
    if not manifest["models"]:
        lines.append("  (none yet)")
    return lines
