"""Train a GAN on an LMDB made by prepare_data.py.

    python train.py lmdb --arch wgan-gp --size 64
    python train.py lmdb --arch stylegan --max-size 64
    python train.py lmdb --name my-run --resume
    python train.py lmdb --arch stylegan --init-from emoji-stylegan --init-size 64   # fine-tune a pretrained model
    python train.py lmdb_a lmdb_b --arch cyclegan   # an unpaired image-to-image task: one LMDB per domain
"""
import sys
from pathlib import Path
from typing import Annotated

from pydantic import Field

from jgan import registry, schema
from jgan.cli import ArgumentParser, config_flag, run, value_flag, writable_folder

DEFAULT_ARCH = "wgan-gp"
# flag: the configuration keys it sets; its type, range and meaning are those of jgan.schema
CONFIG_FLAGS = {
    "--batch": ("train.batch",), "--iters": ("train.iters",), "--n-critic": ("train.n_critic",),
    "--lr": ("optim.lr_g", "optim.lr_d"), "--ema": ("train.ema",), "--seed": ("train.seed",),
    "--workers": ("train.num_workers",), "--sample-every": ("train.sample_every",),
    "--ckpt-every": ("train.ckpt_every",), "--log-every": ("train.log_every",), "--keep": ("train.keep",),
    "--metrics": ("train.metrics",), "--metrics-every": ("train.metrics_every",),
    "--metrics-n": ("train.metrics_n",), "--precision": ("train.precision",),
}
PROGRESSIVE_FLAGS = {"--init-size": ("progressive.init_size",), "--max-size": ("progressive.max_size",),
                     "--phase": ("progressive.phase",)}
STYLED_FLAGS = {"--mixing": ("progressive.mixing",), "--loss": ("loss.name",)}
SIZE_KEY = {False: "model.size", True: "progressive.max_size"}   # by whether the arch grows
MEANINGS = {"--lr": "learning rate of both networks",
            "--size": "image size (progressive archs: the final size, as --max-size)"}


def build_parser():
    parser = ArgumentParser(description="Train a GAN (one loop for every architecture).")
    parser.add_argument("lmdb", nargs="+", help="LMDB made by prepare_data.py; cyclegan takes two, "
                                                "LMDB_A LMDB_B, one per domain")
    parser.add_argument("--arch", help=f"architecture: {', '.join(registry.names())} (default: the --config "
                                       f"file's arch, else with --resume the run's, else {DEFAULT_ARCH})")
    parser.add_argument("--config", help="YAML file overlaid on the arch's preset in configs/")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any configuration value, e.g. --set model.ngf=32 (repeatable)")
    parser.add_argument("--name", help="run name: checkpoint/NAME and sample/NAME (default: the arch)")
    parser.add_argument("--resume", action="store_true", help="continue run NAME from its latest checkpoint")
    parser.add_argument("--init-from", metavar="SOURCE",
                        help="start the new run's generator and its EMA from a pretrained model (NAME or "
                             "pretrained/NAME), a run (its name in --checkpoint-dir, or its folder) or a checkpoint "
                             "file (its EMA generator); its arch and model section must match the run's")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto = CUDA when Jittor has it")
    parser.add_argument("--checkpoint-dir", default="checkpoint", help="where run folders are written")
    parser.add_argument("--sample-dir", default="sample", help="where sample grids are written")
    value_flag(parser, "--minutes", Annotated[float, Field(gt=0)],
               "stop (with a checkpoint) after this much training time, even before --iters; the clock starts "
               "after the first step, which compiles the kernels")
    parser.add_argument("--nan-policy", default="stop", choices=("stop", "skip"),
                        help="on a NaN/Inf loss: stop (keeping the last good checkpoint) or skip that step "
                             "(its updates and the running statistics its forward passes changed; skip also "
                             "skips an update whose gradients are NaN/Inf)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    shared = parser.add_argument_group("training (default: from the config)")
    config_flag(shared, "--size", schema.flag_field("progressive.max_size"), MEANINGS["--size"])
    for flag, keys in CONFIG_FLAGS.items():
        config_flag(shared, flag, schema.flag_field(keys[0]), MEANINGS.get(flag))
    grow = parser.add_argument_group("progressive architectures such as StyleGAN (default: from the config)")
    for flag, keys in PROGRESSIVE_FLAGS.items():
        config_flag(grow, flag, schema.flag_field(keys[0]))
    style = parser.add_argument_group("StyleGAN (default: from the config)")
    config_flag(style, "--mixing", schema.flag_field("progressive.mixing"))
    config_flag(style, "--loss", schema.flag_field("loss.name"))
    return parser


def destination(flag):
    return flag[2:].replace("-", "_")


def flag_overrides(args):
    """The nested config overrides the explicit flags and --set ask for."""
    from jgan.config import nested, parse_override
    size = {"--size": (SIZE_KEY[registry.get(args.arch).progressive],)}
    flags = {**size, **CONFIG_FLAGS, **PROGRESSIVE_FLAGS, **STYLED_FLAGS}
    overrides = [nested(key, getattr(args, destination(flag))) for flag, keys in flags.items() for key in keys
                 if getattr(args, destination(flag)) is not None]
    return overrides + [parse_override(text) for text in args.set]


def new_config(args, has_cuda):
    """The configuration of a new run: the preset, --config, the flags and --set, checked."""
    from jgan.config import load_config
    return load_config(args.arch, has_cuda, args.config, flag_overrides(args))


def check_same_network(run_dir, trained, config):
    """A resumed run keeps its networks: refuse flags that would change them."""
    from jgan.errors import ConfigError
    model, max_size = trained
    for key, value in model.items():
        if config["model"][key] != value:
            raise ConfigError(f"run {run_dir} was trained with model.{key}={value}; a resumed run keeps "
                              f"its network: drop the flag that changes it, or start a new run with --name")
    if max_size is not None and config["progressive"]["max_size"] < max_size:
        raise ConfigError(f"run {run_dir} grows to {max_size} px; a resumed run cannot shrink it")


def training_data(args):
    """The LMDB of an arch that trains on one data set, or {stream: LMDB} of one that trains on
    several (CycleGAN: domains a and b, in the order given)."""
    import os

    from jgan.errors import ConfigError
    streams = registry.get(args.arch).model_class().streams
    if len(args.lmdb) != len(streams):
        usage = " ".join(f"LMDB_{name.upper()}" for name in streams) if len(streams) > 1 else "LMDB"
        raise ConfigError(f"{args.arch} trains on {len(streams)} LMDB{'s' * (len(streams) > 1)}, got "
                          f"{len(args.lmdb)}; pass `train.py {usage} --arch {args.arch}`")
    if len(streams) == 1:
        return args.lmdb[0]
    if len({os.path.realpath(path) for path in args.lmdb}) < len(args.lmdb):
        raise ConfigError(f"{args.arch} got the same LMDB twice ({' '.join(args.lmdb)}); pass one LMDB per "
                          f"domain")
    return dict(zip(streams, args.lmdb))


def chosen_arch(args):
    """--arch, else the arch the --config file names, else with --resume the arch of the run it
    continues, else DEFAULT_ARCH."""
    from jgan.config import read_yaml, run_arch
    return (args.arch or (read_yaml(args.config).get("arch") if args.config else None)
            or (run_arch(Path(args.checkpoint_dir) / args.name) if args.resume and args.name else None)
            or DEFAULT_ARCH)


def check_flags_apply(args):
    """Flags of progressive or StyleGAN architectures are refused for the others; --init-from
    starts a new run."""
    from jgan.errors import ConfigError
    if args.init_from and args.resume:
        raise ConfigError("--init-from starts a new run, and --resume continues one; drop one of them")
    arch = registry.get(args.arch)
    for flags, capability, kind in ((PROGRESSIVE_FLAGS, "progressive", "progressive-growing"),
                                    (STYLED_FLAGS, "styled", "StyleGAN")):
        given = [flag for flag in flags if getattr(args, destination(flag)) is not None]
        if given and not getattr(arch, capability):
            example = registry.names(**{capability: True})[0]
            raise ConfigError(f"{given[0]} is a {kind} flag that {args.arch} does not take; drop it or "
                              f"pass --arch {example}")


def run_config(args, run_dir, has_cuda):
    """(configuration, checkpoint to resume or None) of the run in `run_dir`, which this process holds."""
    import copy

    from jgan import checkpoint
    from jgan.config import merge, read_yaml, validate
    from jgan.errors import ConfigError
    if not args.resume:
        if checkpoint.numbered_checkpoints(run_dir):
            raise ConfigError(f"run {run_dir} already has checkpoints; pass --resume to continue it "
                              f"or --name for a new run")
        return new_config(args, has_cuda), None
    document = checkpoint.load_checkpoint(run_dir)
    config = document["config"]
    trained = copy.deepcopy(config["model"]), config.get("progressive", {}).get("max_size")
    for override in ([read_yaml(args.config)] if args.config else []) + flag_overrides(args):
        merge(config, override)
    config = validate(config)
    check_same_network(run_dir, trained, config)
    if config["arch"] != args.arch:
        raise ConfigError(f"run {run_dir} is a {config['arch']} run, not {args.arch}; "
                          f"pass --arch {config['arch']}")
    return config, document


def initial_generator(args, config):
    """The generator weights --init-from names, checked against the new run's configuration."""
    from jgan import pretrained
    source = pretrained.generator_source(args.init_from, args.checkpoint_dir)
    pretrained.check_compatible(source, config)
    return source


def main(args):
    from contextlib import nullcontext

    import jgan
    from jgan import runtime

    args.arch = chosen_arch(args)
    device = runtime.init(args.device)
    import jittor as jt

    from jgan import runlock
    from jgan.mpi import is_main_process
    from jgan.training import Trainer

    check_flags_apply(args)
    data = training_data(args)
    name = args.name or args.arch
    run_dir = writable_folder(Path(args.checkpoint_dir) / name, "--checkpoint-dir")
    writable_folder(Path(args.sample_dir) / name, "--sample-dir")
    with runlock.hold(run_dir) if is_main_process() else nullcontext():
        config, document = run_config(args, run_dir, device == "cuda")
        source = initial_generator(args, config) if args.init_from else None
        preset = registry.get(args.arch).preset_path(device == "cuda").stem if args.config is None else args.config
        say = print if is_main_process() else (lambda *a, **k: None)
        ranks = f", {jt.world_size} MPI ranks" if jt.in_mpi else ""
        say(runtime.startup_line(), file=sys.stderr)
        bf16 = ", bf16 convolutions" if config["train"]["precision"] == "bf16" else ""
        say(f"train: {args.arch} (config {preset}), run {name}, device {device}{ranks}{bf16}, "
            f"jgan {jgan.__version__}", file=sys.stderr)
        trainer = Trainer(config, data, run_dir, Path(args.sample_dir) / name,
                          progress=not args.no_progress, nan_policy=args.nan_policy)
        if document is not None:
            trainer.restore(document)
            say(f"train: resumed {document['path']} at step {trainer.step}", file=sys.stderr)
        if source is not None:
            trainer.start_from(source["state"], source["label"])
            say(f"train: generator and its EMA start from the {source['label']}, {source['size']} px", file=sys.stderr)
            if registry.get(args.arch).progressive and config["progressive"]["init_size"] < source["size"]:
                say(f"train: the run grows from {config['progressive']['init_size']} px; pass --init-size "
                    f"{source['size']} to fine-tune at the generator's size", file=sys.stderr)
        seconds = None if args.minutes is None else args.minutes * 60
        path = trainer.train(config["train"]["iters"], seconds)
    say(f"train: done, step {trainer.step}; checkpoint {path}, samples in {trainer.sample_dir}")


if __name__ == "__main__":
    run(main, build_parser())
