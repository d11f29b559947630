"""Turn a folder of images into the multi-resolution LMDB that train.py reads.

    python prepare_data.py --out lmdb dataset/
    python prepare_data.py --out lmdb --sizes 8 16 32 64 --format jpeg --n_worker 4 photos/
    python prepare_data.py --verify lmdb            # decode every record, list the bad ones

The LMDB has rosinality's style-based-gan-pytorch layout, so either tool reads the other's.
It needs no Jittor, and never imports it.
"""
import sys

from jgan.cli import EXIT_INTERRUPTED, ArgumentParser, run
from jgan.errors import ConfigError, DataError
from jgan.prepare import DEFAULT_SIZES, FORMATS, prepare_lmdb, verify_lmdb


def build_parser():
    parser = ArgumentParser(description="Resize and centre-crop every image of a folder (recursively) "
                                        "to each size and store them in an LMDB.")
    parser.add_argument("folder", nargs="?", help="folder of jpg/png/webp/bmp/gif/tif images (searched recursively)")
    parser.add_argument("--verify", metavar="LMDB", help="instead: decode every record of LMDB and list the bad ones")
    parser.add_argument("--out", default="lmdb", metavar="LMDB", help="the LMDB to write (a folder)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), metavar="SIZE",
                        help="image sizes to store; sizes above the largest image's shorter side are dropped")
    parser.add_argument("--format", choices=FORMATS, default="png",
                        help="encoding of the stored images (png is lossless)")
    parser.add_argument("--quality", type=int, default=95, metavar="Q",
                        help="JPEG quality (with --format jpeg)")
    parser.add_argument("--n_worker", "--n-worker", type=int, default=1, metavar="N",
                        help="processes decoding and encoding images")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --out LMDB (only once the new one is complete)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def verify(path):
    """List the records of an LMDB that cannot be decoded; exit code 2 if there are any."""
    checked, bad = verify_lmdb(path)
    for key, why in bad:
        print(f"{key}: {why}")
    if bad:
        raise DataError(f"{len(bad)} of the {checked} records of {path} are bad (listed above); recreate it "
                        f"with `python prepare_data.py --force --out {path} FOLDER`")
    print(f"{path}: all {checked} records decode")


def main(args):
    if args.verify:
        return verify(args.verify)
    if args.folder is None:
        raise ConfigError("pass the folder of images to pack (or --verify LMDB)")
    try:
        summary = prepare_lmdb(args.folder, args.out, sizes=args.sizes, image_format=args.format,
                               quality=args.quality, n_worker=args.n_worker, force=args.force,
                               progress=not args.no_progress)
    except KeyboardInterrupt:
        # prepare_lmdb has removed its temporary LMDB by now
        print(f"prepare_data.py: interrupted; {args.out} is unchanged", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    print(summary.report())


if __name__ == "__main__":
    run(main, parser=build_parser())
