"""Ship a trained run as a pretrained model: its EMA generator alone (float32) as pretrained/NAME.npz,
a model card pretrained/NAME.md with a 64-sample grid pretrained/NAME.png, and an entry with the
file's sha256 in pretrained/models.yaml (jgan.pretrained). All of pretrained/ stays within 40 MB.

    python scripts/export_pretrained.py checkpoint/sg --name my-stylegan --default \
        --data "Google emoji, 3,786 images at 64 px (scripts/get_emoji.sh)" --licence Apache-2.0 \
        --recipe "python train.py lmdb --arch stylegan --iters 40000" --commit abc1234 --lmdb lmdb --n 2048
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jgan.cli import ArgumentParser, run  # noqa: E402


def build_parser():
    parser = ArgumentParser(description="Export a run's EMA generator as a pretrained jgan model.")
    parser.add_argument("run", help="run folder (its latest checkpoint) or checkpoint file")
    parser.add_argument("--name", required=True, help="model name, e.g. emoji-stylegan: pretrained/NAME.npz")
    parser.add_argument("--pretrained-dir", help="the pretrained folder (default: $JGAN_PRETRAINED, else the "
                                                 "repository's pretrained/)")
    parser.add_argument("--default", action="store_true",
                        help="make it the model generate.py uses when checkpoint/ holds no run")
    parser.add_argument("--data", required=True, help="what it was trained on, for the card")
    parser.add_argument("--licence", required=True, help="the licence of that data, for the card")
    parser.add_argument("--recipe", help="the training command(s), for the card")
    parser.add_argument("--commit", help="the jgan commit it was trained at, for the card")
    parser.add_argument("--training-time", help="e.g. '6 h 10 min CPU time on 2 cores of ...' (default: the "
                                                "wall-clock of the run's log.jsonl)")
    swd = parser.add_mutually_exclusive_group()
    swd.add_argument("--swd", type=float, help="SWD x1e3 measured already (e.g. by scripts/evaluate.py)")
    swd.add_argument("--lmdb", help="measure SWD x1e3 against this LMDB (jgan.metrics), on --n vs --n images")
    parser.add_argument("--n", type=int, default=2048, help="images of each side for --lmdb")
    parser.add_argument("--seed", type=int, default=0, help="seed of the grid's latents and of SWD")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return parser


def main(args):
    from jgan import runtime

    runtime.init(args.device)
    print(runtime.startup_line(), file=sys.stderr)
    from jgan import pretrained

    item = pretrained.export(args.run, args.name, args.pretrained_dir, data=args.data, licence=args.licence,
                             recipe=args.recipe, commit=args.commit, training_time=args.training_time,
                             swd=args.swd, lmdb=args.lmdb, n=args.n, seed=args.seed, default=args.default)
    root = pretrained.folder(args.pretrained_dir)
    swd = f", SWD x1e3 {item['swd']:.1f}" if item["swd"] is not None else ", SWD not measured"
    print(f"export: {item['name']}: {item['arch']} at {item['size']} px, {item['bytes'] / 1e6:.2f} MB{swd}; "
          f"{root / item['file']}, {root / item['card']}, {root / item['grid']}; {root / pretrained.MANIFEST} "
          f"updated ({pretrained.folder_bytes(root) / 1e6:.1f} of {pretrained.BUDGET_BYTES / 1e6:g} MB used)")


if __name__ == "__main__":
    run(main, build_parser())
