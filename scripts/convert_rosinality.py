"""Convert a checkpoint of rosinality's style-based-gan-pytorch into a jgan run folder.

    python scripts/convert_rosinality.py train_step-7.model checkpoint/rosinality
    python generate.py -g checkpoint/rosinality --mixing --noise

SRC is either a `train_step-N.model` (a dict with `generator`, `discriminator`, `g_running`, ...)
or a bare `g_running` state dict. Reading it needs PyTorch (used by this tool only).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jgan.cli import ArgumentParser, run  # noqa: E402


def build_parser():
    parser = ArgumentParser(description="Convert a rosinality StyleGAN checkpoint into a jgan run folder.")
    parser.add_argument("src", help="rosinality checkpoint (.model / .pt)")
    parser.add_argument("dst", help="jgan run folder to write (e.g. checkpoint/rosinality)")
    parser.add_argument("--size", type=int, help="resolution the generator was trained to (default: its largest)")
    parser.add_argument("--force", action="store_true", help="write into a run folder that has checkpoints")
    return parser


def read_torch_checkpoint(path):
    """{name: numpy state dict} of a rosinality checkpoint file."""
    from jgan.errors import CheckpointError, ConfigError
    from jgan.runtime import import_torch
    try:
        torch = import_torch()
    except ImportError:
        raise ConfigError("reading a rosinality checkpoint needs PyTorch, which is not installed; "
                          "run `pip install torch` (jgan itself does not need it)") from None
    if not Path(path).is_file():
        raise CheckpointError(f"{path} does not exist; pass a rosinality checkpoint file")
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file it cannot read
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__})") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    if not any(isinstance(v, dict) for v in document.values()):
        document = {"g_running": document}
    return {name: {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}
            for name, state in document.items() if name in ("generator", "discriminator", "g_running")}


def main(args):
    from jgan import runtime
    runtime.init()
    print(runtime.startup_line(), file=sys.stderr)
    from jgan import checkpoint
    from jgan.config import save_config
    from jgan.convert import rosinality_checkpoint
    from jgan.errors import ConfigError

    if checkpoint.numbered_checkpoints(args.dst) and not args.force:
        raise ConfigError(f"{args.dst} already holds checkpoints; pass --force or another folder")
    payload = rosinality_checkpoint(read_torch_checkpoint(args.src), args.size)
    path = checkpoint.save_checkpoint(args.dst, 0, payload)
    save_config(payload["config"], Path(args.dst) / "config.yaml")
    print(f"convert: wrote {path} ({', '.join(sorted(payload['networks']))})")


if __name__ == "__main__":
    run(main, build_parser())
