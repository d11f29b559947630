"""Evaluate a trained generator against its LMDB with SWD, FID and KID.

    python scripts/evaluate.py lmdb -g checkpoint/dcgan --metrics swd
    python scripts/evaluate.py lmdb -g checkpoint/dcgan --metrics swd,fid,kid \
        --inception pt_inception-2015-12-05-6726825d.pth
    python scripts/evaluate.py lmdb --real-vs-real --size 32 --metrics swd,fid    # the baseline
    python scripts/evaluate.py lmdb_b -g checkpoint/cyclegan --translate lmdb_a    # A -> B against B

Prints a table and appends one JSON line to the run's metrics.jsonl (beside the checkpoint);
a pretrained model's folder is left as shipped.
FID and KID need pytorch-fid's Inception weights (--inception PATH or $JGAN_INCEPTION).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jgan.cli import ArgumentParser, run  # noqa: E402


def build_parser():
    parser = ArgumentParser(description="Evaluate a jgan generator with SWD, FID and KID.")
    parser.add_argument("lmdb", help="LMDB of the real images (made by prepare_data.py)")
    parser.add_argument("-g", "--checkpoint", help="checkpoint file or run folder to evaluate")
    parser.add_argument("--metrics", default="swd", help="comma-separated: swd, fid, kid")
    parser.add_argument("--n", type=int, default=10000,
                        help="generated images; real images: as many, at most all of the LMDB")
    parser.add_argument("--real-vs-real", action="store_true",
                        help="compare two disjoint halves of the LMDB instead of a generator (baseline)")
    parser.add_argument("--size", type=int,
                        help="resolution for --real-vs-real; if not given, the LMDB's largest")
    parser.add_argument("--inception", help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                                            "(or .npz); if not given, $JGAN_INCEPTION")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents and of SWD's draws")
    parser.add_argument("--batch", type=int, default=16, help="images per Inception batch")
    parser.add_argument("--cache-dir", help="where real-image features are cached; if not given, ~/.cache/jgan/metrics")
    parser.add_argument("--no-ema", action="store_true", help="use the trained generator, not its EMA")
    parser.add_argument("--translate", metavar="SOURCE_LMDB",
                        help="image-to-image runs (CycleGAN): translate up to --n images of this LMDB and compare "
                             "them, and the untranslated ones, with the LMDB")
    parser.add_argument("--direction", default="a2b", choices=("a2b", "b2a"),
                        help="with --translate: a2b from the first training domain to the second")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return parser


def table(result):
    rows = [(key, f"{value:.4f}" if isinstance(value, float) else str(value)) for key, value in result.items()]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def translation_metrics(args, options):
    """--translate: the metrics of the translations and of the untranslated images against the LMDB."""
    from jgan import metrics
    from jgan.translation import evaluate_translation, load_translator

    translator = load_translator(args.checkpoint, args.direction)
    result = evaluate_translation(translator, args.translate, args.lmdb, **options)
    for label, values in result.items():
        print(f"{label} {args.direction} vs {args.lmdb}:\n{table(values)}")
    record = {"step": translator.run_step, "checkpoint": translator.checkpoint, "direction": args.direction,
              "source": str(Path(args.translate).resolve()), "lmdb": str(Path(args.lmdb).resolve()),
              "seed": args.seed, **result}
    print(f"appended to {metrics.append_record(Path(translator.checkpoint).parent, record)}")


def main(args):
    from jgan import registry, runtime
    from jgan.errors import ConfigError

    if args.real_vs_real == bool(args.checkpoint):
        raise ConfigError("pass either -g CHECKPOINT or --real-vs-real")
    runtime.init(args.device)
    print(runtime.startup_line(), file=sys.stderr)
    from jgan import metrics
    from jgan.generation import load_trained

    options = dict(metrics=args.metrics, n=args.n, seed=args.seed, batch=args.batch,
                   inception=args.inception, cache_dir=args.cache_dir, progress=True)
    if args.real_vs_real:
        result = metrics.evaluate_real_vs_real(args.lmdb, size=args.size, **options)
        print(table(result))
        return
    if args.size:
        raise ConfigError("--size applies to --real-vs-real only; a generator is evaluated at its resolution")
    if args.translate:
        return translation_metrics(args, options)
    trained = load_trained(args.checkpoint, ema=not args.no_ema)
    if registry.get(trained.arch).translates:
        raise ConfigError(f"{trained.checkpoint} is a {trained.arch} run, whose generators translate images "
                          f"instead of drawing them; pass --translate SOURCE_LMDB")
    result = metrics.evaluate(trained, args.lmdb, **options)
    print(table(result))
    if trained.name:
        print(f"not appended anywhere: {trained.name} is a pretrained model (its card holds its SWD)")
        return
    record = {"step": trained.run_step, "checkpoint": trained.checkpoint, "ema": not args.no_ema,
              "lmdb": str(Path(args.lmdb).resolve()), "seed": args.seed, **result}
    log = metrics.append_record(Path(trained.checkpoint).parent, record)
    print(f"appended to {log}")


if __name__ == "__main__":
    run(main, build_parser())
