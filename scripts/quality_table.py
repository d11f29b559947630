"""Train each architecture for the same time on an LMDB, then measure SWD: the README's quality table.

    python scripts/quality_table.py lmdb --minutes 10 --size 32

Runs go to --checkpoint-dir (default checkpoint/quality-<arch>), sample grids to --out. Prints a
Markdown table with the real-vs-real baseline, the command and the date.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jgan import registry  # noqa: E402
from jgan.cli import ArgumentParser, run, writable_folder  # noqa: E402


def build_parser():
    parser = ArgumentParser(description="Same time budget for every arch, then SWD on the data.")
    parser.add_argument("lmdb", help="LMDB made by prepare_data.py")
    parser.add_argument("--archs", default=",".join(registry.TABLE_ARCHS),
                        help=f"comma-separated architectures among {', '.join(registry.names())}")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per architecture")
    parser.add_argument("--size", type=int, default=32, help="image size (StyleGAN grows to it)")
    parser.add_argument("--n", type=int, default=2048, help="images per side for SWD")
    parser.add_argument("--checkpoint-dir", default="checkpoint", help="where the runs are written")
    parser.add_argument("--out", default="results/quality", help="where the sample grids are written")
    return parser


def overrides(arch, size):
    """Settings that make a run of a few minutes meaningful on a CPU."""
    if registry.get(arch).progressive:
        return [{"progressive": {"max_size": size, "phase": 4000}}]
    return [{"model": {"size": size, "ngf": 32, "ndf": 32}, "train": {"batch": 32}}]


def train_one(arch, args):
    from jgan.config import load_config
    from jgan.training import Trainer
    config = load_config(arch, False, None, overrides(arch, args.size) + [{"train": {"iters": 10 ** 9}}])
    name = f"quality-{arch}"
    trainer = Trainer(config, args.lmdb, Path(args.checkpoint_dir) / name, Path("sample") / name, progress=True)
    started = time.process_time()
    path = trainer.train(config["train"]["iters"], seconds=args.minutes * 60)
    return path, trainer.step, trainer.images, time.process_time() - started


def main(args):
    from jgan import runtime
    runtime.init()
    from jgan import generation, metrics, visual

    out = writable_folder(args.out, "--out")
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    rows = []
    for arch in archs:
        path, steps, images, cpu = train_one(arch, args)
        generator = generation.load_trained(path)
        result = metrics.evaluate(generator, args.lmdb, metrics=("swd",), n=args.n, seed=0)
        visual.save_image(generation.sample_grid(generator, 64, 8, seed=0)[1], out / f"{arch}.png")
        rows.append((arch, generator.size, steps, images, cpu, result))
        print(f"quality: {arch} done, SWD {result['swd']:.1f}", file=sys.stderr)
    baseline = metrics.evaluate_real_vs_real(args.lmdb, size=args.size, metrics=("swd",), n=args.n, seed=0)
    levels = [key for key in baseline if key.startswith("swd_") and key[4:].isdigit()]
    print(f"Command: `python scripts/quality_table.py {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d')}\n")
    print("| arch | px | steps | images shown | CPU s | " + " | ".join(levels) + " | SWD (avg) |")
    print("|---" * (6 + len(levels)) + "|")
    for arch, size, steps, images, cpu, result in rows:
        cells = " | ".join(f"{result.get(level, float('nan')):.1f}" for level in levels)
        print(f"| {arch} | {size} | {steps} | {images} | {cpu:.0f} | {cells} | {result['swd']:.1f} |")
    cells = " | ".join(f"{baseline[level]:.1f}" for level in levels)
    print(f"| real vs real | {args.size} | | | | {cells} | {baseline['swd']:.1f} |")


if __name__ == "__main__":
    run(main, build_parser())
