"""Train a GAN on an LMDB made by prepare_data.py.

    python train.py lmdb --arch wgan-gp --size 64
    python train.py lmdb --arch stylegan --max-size 64
    python train.py lmdb --arch stylegan --name my-run --resume
"""
import sys

from jgan import registry
from jgan.cli import ArgumentParser, run, writable_folder

DEFAULT_ARCH = "wgan-gp"
PROGRESSIVE_FLAGS = ("init_size", "max_size", "phase")
STYLED_FLAGS = ("mixing", "loss")


def build_parser():
    parser = ArgumentParser(description="Train a GAN (one loop for every architecture).")
    parser.add_argument("lmdb", help="LMDB made by prepare_data.py")
    parser.add_argument("--arch", help=f"architecture: {', '.join(registry.names())} (default: the --config "
                                       f"file's arch, else {DEFAULT_ARCH})")
    parser.add_argument("--config", help="YAML file overlaid on the arch's preset in configs/")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any configuration value, e.g. --set model.ngf=32 (repeatable)")
    parser.add_argument("--name", help="run name: checkpoint/NAME and sample/NAME (default: the arch)")
    parser.add_argument("--resume", action="store_true", help="continue run NAME from its latest checkpoint")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto = CUDA when Jittor has it")
    parser.add_argument("--checkpoint-dir", default="checkpoint", help="where run folders are written")
    parser.add_argument("--sample-dir", default="sample", help="where sample grids are written")
    parser.add_argument("--minutes", type=float,
                        help="stop (with a checkpoint) after this much training time, even before --iters")
    parser.add_argument("--nan-policy", default="stop", choices=("stop", "skip"),
                        help="on a NaN/Inf loss: stop (keeping the last good checkpoint) or skip that update")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    shared = parser.add_argument_group("training (default: from the config)")
    shared.add_argument("--size", type=int, help="image size (StyleGAN: the final size, as --max-size)")
    shared.add_argument("--batch", type=int,
                        help="batch size (StyleGAN: one batch for every resolution instead of the schedule)")
    shared.add_argument("--iters", type=int, help="total generator steps")
    shared.add_argument("--n-critic", type=int, help="discriminator steps per generator step")
    shared.add_argument("--lr", type=float, help="learning rate of both networks")
    shared.add_argument("--ema", type=float, help="EMA decay of the sample generator (0 = off)")
    shared.add_argument("--seed", type=int, help="random seed")
    shared.add_argument("--workers", type=int, help="data-loader threads that decode the next batches while the model trains")
    shared.add_argument("--sample-every", type=int, help="write a fixed-noise sample grid every N steps")
    shared.add_argument("--ckpt-every", type=int, help="write a checkpoint every N steps")
    shared.add_argument("--log-every", type=int, help="log losses every N steps")
    shared.add_argument("--metrics", help="metrics to evaluate during training, e.g. swd (see scripts/evaluate.py)")
    shared.add_argument("--metrics-every", type=int, help="evaluate the metrics every N steps")
    shared.add_argument("--metrics-n", type=int, help="images per evaluation")
    grow = parser.add_argument_group("progressive architectures such as StyleGAN (default: from the config)")
    grow.add_argument("--init-size", type=int, help="first resolution of progressive growing")
    grow.add_argument("--max-size", type=int, help="final resolution of progressive growing")
    grow.add_argument("--phase", type=int, help="images shown per fade-in (and again per hold)")
    style = parser.add_argument_group("StyleGAN (default: from the config)")
    style.add_argument("--mixing", type=float, help="style-mixing probability (0 = off)")
    style.add_argument("--loss", choices=("wgan-gp", "r1"), help="StyleGAN loss")
    return parser


def flag_overrides(args):
    """The nested config overrides the explicit flags ask for."""
    from jgan.config import parse_override
    progressive = registry.get(args.arch).progressive
    flags = {
        ("train", "batch"): args.batch, ("train", "iters"): args.iters,
        ("train", "n_critic"): args.n_critic, ("train", "ema"): args.ema,
        ("train", "seed"): args.seed, ("train", "num_workers"): args.workers,
        ("train", "sample_every"): args.sample_every, ("train", "ckpt_every"): args.ckpt_every,
        ("train", "log_every"): args.log_every, ("train", "metrics"): args.metrics,
        ("train", "metrics_every"): args.metrics_every, ("train", "metrics_n"): args.metrics_n,
        ("optim", "lr_g"): args.lr, ("optim", "lr_d"): args.lr,
        ("progressive" if progressive else "model", "max_size" if progressive else "size"): args.size,
        ("progressive", "init_size"): args.init_size, ("progressive", "max_size"): args.max_size,
        ("progressive", "phase"): args.phase, ("progressive", "mixing"): args.mixing,
    }
    overrides = [{section: {key: value}} for (section, key), value in flags.items() if value is not None]
    if args.loss is not None:
        overrides.append({"loss": {"name": args.loss}})
    return overrides + [parse_override(text) for text in args.set]


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


def config_file_arch(path):
    """The `arch` a --config file names, if any."""
    from jgan.config import read_yaml
    return read_yaml(path).get("arch") if path else None


def check_flags_apply(args):
    """Flags of progressive or StyleGAN architectures are refused for the others."""
    from jgan.errors import ConfigError
    arch = registry.get(args.arch)
    for flags, capability, kind in ((PROGRESSIVE_FLAGS, "progressive", "progressive-growing"),
                                    (STYLED_FLAGS, "styled", "StyleGAN")):
        given = [flag for flag in flags if getattr(args, flag) is not None]
        if given and not getattr(arch, capability):
            example = registry.names(**{capability: True})[0]
            raise ConfigError(f"--{given[0].replace('_', '-')} is a {kind} flag that {args.arch} does "
                              f"not take; drop it or pass --arch {example}")


def main(args):
    import copy
    from pathlib import Path

    import jgan
    from jgan import runtime

    args.arch = args.arch or config_file_arch(args.config) or DEFAULT_ARCH
    device = runtime.init(args.device)
    import jittor as jt

    from jgan import checkpoint
    from jgan.config import load_config, merge, read_yaml
    from jgan.errors import ConfigError
    from jgan.mpi import is_main_process
    from jgan.training import Trainer

    check_flags_apply(args)
    name = args.name or args.arch
    run_dir = writable_folder(Path(args.checkpoint_dir) / name, "--checkpoint-dir")
    writable_folder(Path(args.sample_dir) / name, "--sample-dir")
    overrides = flag_overrides(args)
    if args.resume:
        document = checkpoint.load_checkpoint(run_dir)
        config = document["config"]
        trained = copy.deepcopy(config["model"]), config.get("progressive", {}).get("max_size")
        for override in ([read_yaml(args.config)] if args.config else []) + overrides:
            merge(config, override)
        check_same_network(run_dir, trained, config)
    else:
        if checkpoint.numbered_checkpoints(run_dir):
            raise ConfigError(f"run {run_dir} already has checkpoints; pass --resume to continue it "
                              f"or --name for a new run")
        config = load_config(args.arch, device == "cuda", args.config, overrides)
        document = None
    if config["arch"] != args.arch:
        raise ConfigError(f"run {run_dir} is a {config['arch']} run, not {args.arch}; "
                          f"pass --arch {config['arch']}")
    preset = registry.get(args.arch).preset_path(device == "cuda").stem if args.config is None else args.config
    say = print if is_main_process() else (lambda *a, **k: None)
    ranks = f", {jt.world_size} MPI ranks" if jt.in_mpi else ""
    say(runtime.startup_line(), file=sys.stderr)
    say(f"train: {args.arch} (config {preset}), run {name}, device {device}{ranks}, "
        f"jgan {jgan.__version__}", file=sys.stderr)
    trainer = Trainer(config, args.lmdb, run_dir, Path(args.sample_dir) / name,
                      progress=not args.no_progress, nan_policy=args.nan_policy)
    if document is not None:
        trainer.restore(document)
        say(f"train: resumed {document['path']} at step {trainer.step}", file=sys.stderr)
    seconds = None if args.minutes is None else args.minutes * 60
    path = trainer.train(config["train"]["iters"], seconds)
    say(f"train: done, step {trainer.step}; checkpoint {path}, samples in {trainer.sample_dir}")


if __name__ == "__main__":
    run(main, build_parser())
