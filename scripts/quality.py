"""Quality against wall-clock time: train one configuration on an LMDB and score it at time points.

    python scripts/quality.py lmdb --config configs/fast-cpu.yaml --minutes 5 10 20 30
    python scripts/quality.py lmdb --arch dcgan --set model.ngf=32 --minutes 5 10 --size 32 --torch

The run is trained up to each time point and scored there; scoring (SWD x1e3 per level and
averaged, n generated vs n real images, seed 0; FID and KID with --inception) and the sample grid
(64 images, 8 per row, into --out) are off the clock, and so is the first step of a run (Jittor
compiles its kernels there; the JSON keeps its seconds). With --torch, the PyTorch reference DCGAN
of tests/reference is trained afterwards in this process, with the recipe of configs/dcgan.yaml
(--size and --torch-set override it), by a standard PyTorch loop (a shuffled DataLoader over
the same LMDB with random horizontal flips), on as many threads, and scored by the same code.
Both generators are scored in evaluation mode (BatchNorm with its running statistics).
Prints one Markdown table, with the real-vs-real floor of the LMDB; --json keeps every number.
"""
import json
import os
import random
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jgan import quality, registry  # noqa: E402  (neither imports Jittor)
from jgan.cli import ArgumentParser, run, writable_folder  # noqa: E402

TORCH_RECIPE = "dcgan"   # the preset the PyTorch reference trains with
GRID_IMAGES, GRID_ROW = 64, 8


def build_parser():
    parser = ArgumentParser(description="Train one configuration and score it at several training times.")
    parser.add_argument("lmdb", help="LMDB made by prepare_data.py")
    parser.add_argument("--config", help="YAML file overlaid on the arch's preset (as train.py's)")
    parser.add_argument("--arch", help=f"architecture: {', '.join(registry.names())} "
                                       f"(default: the --config file's, else dcgan)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a configuration value of the jgan run (repeatable)")
    parser.add_argument("--name", help="recipe name in file and folder names "
                                       "(default: the --config file's stem, else the arch)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 10, 20, 30],
                        help="time points: minutes of training, increasing")
    parser.add_argument("--size", type=int, help="image size of both runs (default: their configurations')")
    parser.add_argument("--n", type=int, default=2048, help="generated and real images per score")
    parser.add_argument("--inception", help="pytorch-fid's Inception weights: adds FID and KID")
    parser.add_argument("--torch", action="store_true",
                        help=f"also train the PyTorch reference DCGAN (configs/{TORCH_RECIPE}.yaml)")
    parser.add_argument("--torch-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a value of the reference's recipe, e.g. model.ngf=32 (repeatable)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads of both frameworks (OMP_NUM_THREADS, torch.set_num_threads)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto = CUDA when Jittor has it; --torch runs on the same device")
    parser.add_argument("--checkpoint-dir", help="where the runs are kept (default: checkpoint/quality-NAME)")
    parser.add_argument("--out", default="results/quality", help="where the sample grids are written")
    parser.add_argument("--json", type=Path, help="write every number to this JSON file")
    parser.add_argument("--nan-policy", default="stop", choices=("stop", "skip"),
                        help="on a NaN/Inf loss or gradient of the jgan run: stop, or skip that step (as train.py's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def choose_arch(args):
    """--arch, else the `arch` of the --config file, else dcgan; checked against the registry."""
    from jgan.config import read_yaml
    arch = args.arch or (read_yaml(args.config).get("arch") if args.config else None) or "dcgan"
    registry.get(arch)
    return arch


def size_override(arch, size):
    if size is None:
        return []
    key = ("progressive", "max_size") if registry.get(arch).progressive else ("model", "size")
    return [{key[0]: {key[1]: size}}]


def final_size(config):
    if registry.get(config["arch"]).progressive:
        return config["progressive"]["max_size"]
    return config["model"]["size"]


def check_inputs(args):
    """Every check that needs no Jittor, so that a bad flag fails at once."""
    from jgan.errors import ConfigError, DataError
    quality.check_minutes(args.minutes)
    if args.n < 2:
        raise ConfigError(f"--n must be at least 2 images, got {args.n}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.torch_set and not args.torch:
        raise ConfigError("--torch-set changes the PyTorch reference's recipe; add --torch or drop it")
    if not Path(args.lmdb).exists():
        raise DataError(f"{args.lmdb} does not exist; create it with "
                        f"`python prepare_data.py --out {args.lmdb} FOLDER`")


def load_configs(args, arch, device):
    """The jgan run's configuration and (with --torch) the reference's recipe, checked against the data."""
    from jgan.config import load_config, parse_override
    from jgan.data import LMDBImages
    config = load_config(arch, device == "cuda", args.config,
                         size_override(arch, args.size) + [parse_override(text) for text in args.set])
    data = LMDBImages(args.lmdb)
    data.check_size(final_size(config))
    recipe = None
    if args.torch:
        recipe = load_config(TORCH_RECIPE, False, None,
                             size_override(TORCH_RECIPE, args.size) + [parse_override(t) for t in args.torch_set])
        check_reference_size(recipe["model"]["size"])
        data.check_size(recipe["model"]["size"])
    return config, recipe


def check_reference_size(size):
    from jgan.errors import ConfigError
    if size < 16 or size & (size - 1):
        raise ConfigError(f"the PyTorch reference DCGAN needs an image size that is a power of two of at "
                          f"least 16 px, got {size}; pass another --size")


def run_folder(checkpoint_dir, side):
    """A folder for one side's run; one that holds an earlier run is refused."""
    from jgan import checkpoint
    from jgan.errors import ConfigError
    folder = writable_folder(Path(checkpoint_dir) / side, "--checkpoint-dir")
    if checkpoint.numbered_checkpoints(folder) or any(folder.glob("*.pt")):
        raise ConfigError(f"{folder} already holds a run; delete it, or pass another --name or --checkpoint-dir")
    return folder


# ----- the PyTorch reference --------------------------------------------------------------------------
class TorchSampler:
    """A PyTorch generator called as jgan's metrics call one: latents (a jt.Var) -> images (a CPU tensor)."""

    def __init__(self, torch, module, latent_dim, size, device):
        self.torch, self.module, self.device = torch, module, device
        self.latent_dim, self.size = latent_dim, size

    def __call__(self, z):
        with self.torch.no_grad():
            return self.module(self.torch.from_numpy(z.numpy()).to(self.device)).cpu()


class TorchDCGANRun:
    """The reference DCGAN (tests/reference) trained as the PyTorch DCGAN example trains it: per
    batch, one discriminator step on real and fake, then one generator step on the same fakes."""

    def __init__(self, recipe, lmdb, folder, device, threads):
        from jgan import runtime
        torch = self.torch = runtime.import_torch()
        torch.set_num_threads(threads)
        sys.path.insert(0, str(ROOT / "tests"))
        from reference import losses_torch
        from reference.dcgan_torch import torch_networks
        from reference.training_torch import endless, lmdb_loader
        model, optim, train = recipe["model"], recipe["optim"], recipe["train"]
        self.recipe, self.folder, self.losses = recipe, folder, losses_torch
        self.device = torch.device(device)
        self.latent_dim, self.size = model["nz"], model["size"]
        generator, discriminator = torch_networks(TORCH_RECIPE, model["size"], model["nz"], model["ngf"],
                                                  model["ndf"], model.get("critic_norm", "batch"))
        self.generator, self.discriminator = generator.to(self.device), discriminator.to(self.device)
        betas = tuple(optim["betas"])
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), optim["lr_g"], betas=betas)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), optim["lr_d"], betas=betas)
        torch.manual_seed(train["seed"])
        random.seed(train["seed"])
        self.batches = endless(lmdb_loader(lmdb, model["size"], train["batch"], train["num_workers"], train["flip"]))
        self.steps = self.images = 0
        self.warmup_seconds = None

    def step(self):
        torch, losses = self.torch, self.losses
        real = next(self.batches).to(self.device)
        fake = self.generator(torch.randn(real.shape[0], self.latent_dim, device=self.device))
        d_loss, _ = losses.bce_d(self.discriminator, real, fake.detach())
        self.optimizer_d.zero_grad()
        d_loss.backward()
        self.optimizer_d.step()
        g_loss = losses.bce_g(self.discriminator, fake)
        self.optimizer_g.zero_grad()
        g_loss.backward()
        self.optimizer_g.step()
        self.steps += 1
        self.images += real.shape[0]

    def warm_up(self):
        started = time.perf_counter()
        self.generator.train()
        self.discriminator.train()
        self.step()
        self.warmup_seconds = round(time.perf_counter() - started, 2)

    def train_for(self, seconds):
        """Steps until `seconds` have passed (checked before each step), then a checkpoint."""
        started = time.perf_counter()
        while time.perf_counter() - started <= seconds:
            self.step()
        self.torch.save({"step": self.steps, "images": self.images, "recipe": self.recipe,
                         "generator": self.generator.state_dict(),
                         "discriminator": self.discriminator.state_dict()}, self.folder / "latest.pt")

    @contextmanager
    def sampler(self):
        """The generator in evaluation mode (BatchNorm with its running statistics), as jgan samples."""
        self.generator.eval()
        try:
            yield TorchSampler(self.torch, self.generator, self.latent_dim, self.size, self.device)
        finally:
            self.generator.train()


# ----- the measurement ------------------------------------------------------------------------
class Scorer:
    """Scores a generator at a time point with jgan.metrics and saves its sample grid."""

    def __init__(self, args, out):
        self.args, self.out = args, out
        self.metrics = ("swd", "fid", "kid") if args.inception else ("swd",)

    def options(self):
        return dict(metrics=self.metrics, n=self.args.n, seed=0, inception=self.args.inception)

    def __call__(self, label, generator, minutes, variant=None):
        label = label if variant is None else f"{label}-{variant.replace(' ', '-')}"
        from jgan import generation, metrics, visual
        result = metrics.evaluate(generator, self.args.lmdb, **self.options())
        grid = generation.sample_grid(generator, GRID_IMAGES, GRID_ROW, seed=0)[1]
        visual.save_image(grid, self.out / f"{label}-{minutes:g}min.png")
        print(f"quality: {label} at {minutes:g} min: SWD {result['swd']:.1f}", file=sys.stderr)
        return result

    def check(self):
        """Fails early on a missing Inception weight file."""
        from jgan import metrics
        metrics.settings(self.metrics, self.args.n, 0, 16, self.args.inception, None, False)

    def floors(self, sizes):
        from jgan import metrics
        return {size: metrics.evaluate_real_vs_real(self.args.lmdb, size=size, **self.options())
                for size in sorted(sizes)}


def measure_jgan(args, config, name, folder, scorer):
    from jgan.training import Trainer
    trainer = Trainer(config, args.lmdb, folder, folder.parent / "jgan-samples", progress=not args.no_progress,
                      nan_policy=args.nan_policy)
    jgan_run = quality.JganRun(trainer)
    points = quality.measure(jgan_run, args.minutes, lambda g, m, v: scorer(name, g, m, v))
    return {"recipe": name, "config": config, "warmup_seconds": jgan_run.warmup_seconds,
            "points": [asdict(point) for point in points]}, points


def measure_torch(args, recipe, folder, scorer, device):
    torch_run = TorchDCGANRun(recipe, args.lmdb, folder, device, args.threads)
    name = f"torch-{TORCH_RECIPE}"
    points = quality.measure(torch_run, args.minutes, lambda g, m, v: scorer(name, g, m, v))
    return {"recipe": name, "config": recipe, "warmup_seconds": torch_run.warmup_seconds,
            "threads": torch_run.torch.get_num_threads(), "torch": torch_run.torch.__version__,
            "points": [asdict(point) for point in points]}, points


def header(command, machine, versions):
    threads = f"{machine['threads']} thread{'s' * (machine['threads'] != 1)}"
    where = f"{machine['cpu']}, {threads} ({machine['cores']} cores available)"
    return (f"Command: `{command}`, {time.strftime('%Y-%m-%d')}, {where}, {versions}.\n"
            f"Minutes of training (the first step, where Jittor compiles, is not timed); "
            f"SWD x1e3 of the generator in evaluation mode.")


def write_report(args, report, sides, floors, metrics, context):
    """The Markdown table on stdout and, with --json, every number."""
    command = "python scripts/quality.py " + shlex.join(sys.argv[1:])
    machine = quality.machine(args.threads)
    print(header(command, machine, context["versions"]) + "\n")
    print(quality.markdown_table(sides, floors, metrics))
    if args.json:
        document = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine,
                    **context, "lmdb": str(Path(args.lmdb).resolve()), "minutes": args.minutes, "n": args.n,
                    "seed": 0, "metrics": list(metrics), "sides": report,
                    "floor": {str(size): floor for size, floor in floors.items()}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=1))


def main(args):
    check_inputs(args)
    arch = choose_arch(args)
    name = args.name or (Path(args.config).stem if args.config else arch)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)

    from jgan import runtime
    device = runtime.init(args.device)
    print(runtime.startup_line(), file=sys.stderr)
    import jittor as jt

    import jgan
    config, recipe = load_configs(args, arch, device)
    scorer = Scorer(args, writable_folder(args.out, "--out"))
    scorer.check()
    checkpoint_dir = Path(args.checkpoint_dir or f"checkpoint/quality-{name}")
    folders = {side: run_folder(checkpoint_dir, side) for side in ["jgan"] + ["torch"] * args.torch}

    report, sides = {}, {}
    report["jgan"], sides["jgan"] = measure_jgan(args, config, name, folders["jgan"], scorer)
    sides.update(quality.variant_sides("jgan", sides["jgan"]))
    versions = f"jgan {jgan.__version__}, jittor {jt.__version__}"
    if args.torch:
        report["torch"], sides["torch"] = measure_torch(args, recipe, folders["torch"], scorer, device)
        versions += f", torch {report['torch']['torch']}"
    floors = scorer.floors({point.scores["size"] for points in sides.values() for point in points})
    write_report(args, report, sides, floors, scorer.metrics,
                 {"versions": versions, "device": device, "checkpoint_dir": str(checkpoint_dir)})


if __name__ == "__main__":
    run(main, build_parser())
