"""Split every channel of a StyleGAN run's last generator block in two, into a new run that goes on
training with a block twice as wide (Net2WiderNet: the widened generator draws the same images).

    python scripts/widen_stylegan.py checkpoint/emoji checkpoint/emoji-wide
    python train.py lmdb --name emoji-wide --resume

SRC is a checkpoint file or run folder of a training run; DST gets one checkpoint at the same step,
with the generator, its EMA and their Adam moments widened and everything else as it was.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jgan.cli import ArgumentParser, run  # noqa: E402


def build_parser():
    parser = ArgumentParser(description="Widen the last generator block of a StyleGAN run into a new run.")
    parser.add_argument("src", help="checkpoint file or run folder of a StyleGAN training run")
    parser.add_argument("dst", help="run folder to write (e.g. checkpoint/emoji-wide); it must hold no checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split of each read weight")
    return parser


def main(args):
    from jgan import runtime
    runtime.init()
    from jgan import checkpoint
    from jgan.config import save_config
    from jgan.errors import ConfigError
    from jgan.widening import widen_checkpoint

    if checkpoint.numbered_checkpoints(args.dst):
        raise ConfigError(f"{args.dst} already holds checkpoints; pass a new run folder")
    document = widen_checkpoint(checkpoint.load_checkpoint(args.src), args.seed)
    payload = {key: value for key, value in document.items() if key != "path"}   # where it was read from
    path = checkpoint.save_checkpoint(args.dst, document["step"], payload)
    save_config(document["config"], Path(args.dst) / "config.yaml")
    print(f"widen: wrote {path} (step {document['step']}, model.channels "
          f"{document['config']['model']['channels']}); continue it with train.py --resume")


if __name__ == "__main__":
    run(main, build_parser())
