"""Checkpoints: one pickle file per save, written atomically, plus a `latest` pointer per run.

A checkpoint holds everything a run needs to continue exactly: the model's networks and
optimisers by name (e.g. generator, discriminator, generator_ema), the loop's counters (which
also fix every random draw), the sample inputs and the configuration it was trained with.
Checkpoints of an older format version are upgraded as they are read.
"""
import os
import pickle
import re
from pathlib import Path

import jittor as jt
import numpy as np

from jgan.config import run_arch
from jgan.errors import CheckpointError

FORMAT = "jgan-checkpoint"
VERSION = 2     # 2: `sample_inputs` (was `fixed_z`); DCGAN-family nets named in the `model` section
SUFFIX = ".jgan"
LATEST = "latest"
MILESTONES = "milestones"   # checkpoints kept whatever train.keep says: the last of each progressive phase
_NUMBERED = re.compile(r"^(\d+)\.jgan$")


def module_state(module):
    """A module's parameters and buffers as numpy arrays."""
    return {name: var.numpy().copy() for name, var in module.state_dict().items()}


def load_module_state(module, state, what):
    """Load `state` into `module`, refusing any missing, unexpected or mis-shaped entry."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(np.shape(state[k])))
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else
                  f"unexpected {unexpected[:3]}" if unexpected else
                  f"shape of {wrong[0]} is {tuple(np.shape(state[wrong[0]]))}, expected {tuple(own[wrong[0]].shape)}")
        raise CheckpointError(f"the {what} in this checkpoint does not fit the network ({detail}); "
                              f"it was saved for another architecture, size or width")
    module.load_state_dict({k: np.asarray(v) for k, v in state.items()})


def _per_parameter_keys(group):
    """Keys of an optimiser param group that hold one state Var per parameter (moments)."""
    n = len(group["params"])
    return [k for k, v in group.items()
            if k not in ("params", "grads") and isinstance(v, list) and len(v) == n
            and all(isinstance(x, jt.Var) for x in v)]


def optimizer_state(optimizer):
    groups = [{k: [v.numpy().copy() for v in group[k]] for k in _per_parameter_keys(group)}
              for group in optimizer.param_groups]
    return {"n_step": optimizer.n_step, "groups": groups}


def load_optimizer_state(optimizer, state):
    """Moments and step count; the learning rate comes from the resumed run's configuration, so
    `train.py --resume --lr X` changes it."""
    if len(state["groups"]) != len(optimizer.param_groups):
        raise CheckpointError("the optimiser state in this checkpoint does not fit the network")
    for group, saved in zip(optimizer.param_groups, state["groups"]):
        for key, arrays in saved.items():
            for var, array in zip(group[key], arrays):
                if tuple(var.shape) != array.shape:
                    raise CheckpointError("the optimiser state in this checkpoint does not fit the network")
                var.assign(jt.array(array))
    optimizer.n_step = state["n_step"]


def checkpoint_path(run_dir, step):
    return Path(run_dir) / f"{step:07d}{SUFFIX}"


def _atomic_write(path, data):
    """Write bytes to `path` so that a crash leaves either the old file or the complete new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(run_dir):
    """Delete half-written files a killed process left in the run folder (never a checkpoint)."""
    run_dir = Path(run_dir)
    for path in run_dir.glob(".*.tmp-*") if run_dir.is_dir() else []:
        path.unlink()


def save_checkpoint(run_dir, step, payload, keep=0, milestone=False):
    """Write `payload` as checkpoint `step` of the run and point `latest` at it; then, only then,
    delete all but the newest `keep` checkpoints (0: none) and the milestones. Returns its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(run_dir, step)
    document = {"format": FORMAT, "version": VERSION, **payload}
    _atomic_write(path, pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL))
    _atomic_write(run_dir / LATEST, path.name.encode() + b"\n")
    if milestone:
        _atomic_write(run_dir / MILESTONES, "".join(f"{name}\n" for name in {*milestones(run_dir), path.name}).encode())
    if keep:
        prune(run_dir, keep)
    return path


def milestones(run_dir):
    """Names of the checkpoints that pruning spares."""
    path = Path(run_dir) / MILESTONES
    return set(path.read_text().split()) if path.is_file() else set()


def prune(run_dir, keep):
    """Delete the run's checkpoints but the newest `keep`, the milestones and the one `latest` names."""
    run_dir = Path(run_dir)
    files = numbered_checkpoints(run_dir)
    latest = (run_dir / LATEST).read_text().strip() if (run_dir / LATEST).is_file() else None
    spared = milestones(run_dir) | {path.name for path in files[-keep:]} | {latest}
    for path in files:
        if path.name not in spared:
            path.unlink()


def numbered_checkpoints(run_dir):
    """The run's checkpoint files, oldest step first."""
    run_dir = Path(run_dir)
    files = [p for p in run_dir.iterdir() if _NUMBERED.match(p.name)] if run_dir.is_dir() else []
    return sorted(files, key=lambda p: int(_NUMBERED.match(p.name).group(1)))


def resolve(path):
    """A checkpoint file from a file or a run folder (its `latest`, else its newest checkpoint)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a checkpoint file or a run "
                              f"folder under checkpoint/")
    latest = path / LATEST
    if latest.is_file():
        target = path / latest.read_text().strip()
        if target.is_file():
            return target
    files = numbered_checkpoints(path)
    if not files:
        raise CheckpointError(f"run folder {path} holds no checkpoint; train first or pass another run")
    return files[-1]


def load_checkpoint(path):
    """Read a jgan checkpoint (file or run folder); CheckpointError if it is not a complete one."""
    path = resolve(path)
    try:
        with open(path, "rb") as handle:
            document = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            TypeError, ValueError, MemoryError) as error:
        raise CheckpointError(f"{path} is not a readable jgan checkpoint ({type(error).__name__}); "
                              f"it may be truncated: use an earlier checkpoint of the run") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a jgan checkpoint; for a rosinality StyleGAN "
                              f"checkpoint run scripts/convert_rosinality.py first")
    if document.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer jgan (format {document['version']}); "
                              f"upgrade jgan")
    document["path"] = str(path)
    return upgrade(document)


def upgrade(document):
    """A document of an older jgan in today's form: version 1's `fixed_z` is now `sample_inputs`, and
    configuration keys added since (e.g. the DCGAN family's `model.upsample` and `model.critic_norm`)
    take their preset's value, which is what the older jgan did without them."""
    if document.get("version", 1) < 2 and "fixed_z" in document:
        document["sample_inputs"] = document.pop("fixed_z")
    config = document.get("config")
    if isinstance(config, dict) and "arch" in document:
        from jgan.config import add_missing_keys, preset_of
        add_missing_keys(config, preset_of(document["arch"]))
    document["version"] = VERSION
    return document


def newest_run(root="checkpoint", arch=None):
    """The run folder under `root` whose latest checkpoint is newest (optionally of one arch family)."""
    root = Path(root)
    runs = [d for d in root.iterdir() if d.is_dir() and numbered_checkpoints(d)] if root.is_dir() else []
    if arch is not None:
        runs = [d for d in runs if run_arch(d) in arch]
    if not runs:
        wanted = f" {'/'.join(arch)}" if arch else ""
        raise CheckpointError(f"no{wanted} run found in {root}/; train one with train.py or pass -g")
    return max(runs, key=lambda d: resolve(d).stat().st_mtime)


