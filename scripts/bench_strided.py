"""Time the DCGAN family's 4x4 stride-2 convolutions, and their transposes, one layer at a time:
oneDNN's direct algorithm (jgan.onednn_conv) against Winograd's F(4x4, 2x2) (jgan.strided_winograd).

    python scripts/bench_strided.py                      # the 64 px preset's layers at batch 64
    python scripts/bench_strided.py --batches 8 16 32 64

Each cell is the median milliseconds of a forward pass and both gradients (of sum(y^2)) on random
channels-last float32 tensors, after two untimed runs; "tiles" is what jgan.strided_winograd.takes
counts (it takes a layer from FEWEST_TILES).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jgan.cli import ArgumentParser, run  # noqa: E402

LAYERS = ((64, 32, 128), (128, 16, 256), (256, 8, 512))   # (in channels, input px, out channels) at 64 px


def build_parser():
    parser = ArgumentParser(description="Time the DCGAN family's strided convolutions, direct against Winograd.")
    parser.add_argument("--batches", type=int, nargs="+", default=[64], help="batches to time (default 64)")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs of each cell (default 9)")
    return parser


def median_ms(function, repeats):
    import jittor as jt
    times = []
    for index in range(repeats + 2):
        start = time.perf_counter()
        jt.sync(list(function()))
        if index >= 2:
            times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def forward_and_gradients(convolve, x, w):
    import jittor as jt
    return lambda: jt.grad(convolve(x, w).sqr().sum(), [x, w])


def main(args):
    from jgan import runtime
    runtime.init("cpu")
    import jittor as jt
    import numpy as np
    from jgan import onednn_conv, strided_winograd
    layout = {"channels_last": True, "bfloat16": False}
    direct = (lambda x, w: onednn_conv.conv2d(x, w, None, 2, 1, **layout),
              lambda x, w: onednn_conv.conv_transpose2d(x, w, None, 2, 1, **layout))
    winograd = (strided_winograd.conv2d, strided_winograd.conv_transpose2d)
    rng = np.random.default_rng(0)
    print("layer         px batch tiles  conv: direct ms winograd ms  transposed: direct ms winograd ms")
    for in_channels, size, out_channels in LAYERS:
        for batch in args.batches:
            x = jt.array(rng.standard_normal((batch, size, size, in_channels)).astype("float32"))
            y = jt.array(rng.standard_normal((batch, size // 2, size // 2, out_channels)).astype("float32"))
            w = jt.array(rng.standard_normal((out_channels, in_channels, 4, 4)).astype("float32"))
            cells = [median_ms(forward_and_gradients(way[kind], (x, y)[kind], w), args.repeats)
                     for kind in (0, 1) for way in (direct, winograd)]
            print(f"{in_channels:4d} -> {out_channels:4d} {size:3d} {batch:5d} {strided_winograd.tiles(x.shape):5d}"
                  f"  {cells[0]:15.1f} {cells[1]:11.1f}  {cells[2]:21.1f} {cells[3]:11.1f}", flush=True)
    return 0


if __name__ == "__main__":
    run(main, build_parser())
