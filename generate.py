"""Make images and figures from a trained generator or a pretrained model.

    python generate.py                              # 8x8 grid from the newest run (none: the pretrained default)
    python generate.py --list                       # the runs and the pretrained models
    python generate.py -g emoji-stylegan --mixing   # a pretrained model by name (or -g pretrained/NAME)
    python generate.py -g checkpoint/wganp -s --walk --progress
    python generate.py -g checkpoint/pggan --interpolate
    python generate.py --mixing --noise             # newest StyleGAN run
    python generate.py -g checkpoint/cyclegan --translate photos/ --direction b2a
"""
import sys
from pathlib import Path
from typing import Annotated

from pydantic import Field

from jgan.cli import ArgumentParser, run, value_flag, writable_folder
from jgan.schema import MAX_SEED

AT_LEAST_ONE = Annotated[int, Field(ge=1)]
LATENT_FIGURES = ("walk", "progress", "interpolate", "mixing", "noise", "truncation")


def build_parser():
    parser = ArgumentParser(description="Generate images and figures from a jgan checkpoint.")
    parser.add_argument("-g", "--checkpoint",
                        help="checkpoint file, run folder, run name in --checkpoint-dir, or pretrained model "
                             "(NAME or pretrained/NAME; see --list) (default: the newest run in --checkpoint-dir; "
                             "with no run there, the pretrained default model)")
    parser.add_argument("--checkpoint-dir", default="checkpoint", help="where runs are looked for")
    parser.add_argument("--list", action="store_true", help="list the runs and the pretrained models, and exit")
    parser.add_argument("--out", default="results", help="output folder")
    value_flag(parser, "--n", Annotated[int, Field(ge=1, le=4096)], "number of images in the sample grid", default=64)
    value_flag(parser, "--nrow", AT_LEAST_ONE, "images per grid row", default=8)
    value_flag(parser, "--seed", Annotated[int, Field(ge=0, le=MAX_SEED)],
               "random seed of the latents and of StyleGAN's noise maps (the same seed draws the same figures)",
               default=0)
    parser.add_argument("-s", "--separate", action="store_true", help="also write each image as its own PNG")
    parser.add_argument("--no-ema", action="store_true", help="use the trained generator, not its EMA")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto = CUDA when Jittor has it")
    parser.add_argument("--walk", action="store_true", help="latent-walk GIF (linear in z between random points)")
    parser.add_argument("--progress", action="store_true",
                        help="training-progress GIF: the run's fixed noise through every saved checkpoint")
    parser.add_argument("--interpolate", action="store_true", help="4-corner bilinear latent interpolation grid")
    translate = parser.add_argument_group("image-to-image archs (CycleGAN)")
    translate.add_argument("--translate", metavar="FOLDER",
                           help="translate every image of FOLDER: each translation, and a grid of the first --n "
                                "images as input, translation and reconstruction, --nrow of them per row")
    translate.add_argument("--direction", default="a2b", choices=("a2b", "b2a"),
                           help="a2b: from the domain of the first training LMDB to the second's")
    style = parser.add_argument_group("StyleGAN figures (other archs have no styles or noise: refused)")
    style.add_argument("--mixing", action="store_true", help="style-mixing figure")
    style.add_argument("--mixing-range", default="coarse",
                       help="layers taken from the sources: coarse, middle, fine or A,B (resolution indices, 0 = 4 px)")
    style.add_argument("--noise", action="store_true", help="noise figure with per-pixel standard deviation")
    value_flag(style, "--truncation", Annotated[float, Field(ge=0, le=1)],
               "truncation psi around the average latent (e.g. 0.7; 1 = off)")
    value_flag(style, "--truncation-cutoff", AT_LEAST_ONE, "apply truncation to the first N resolutions only")
    return parser


def translate(args, source, out):
    """--translate: every image of the folder through the checkpoint's generators of one direction."""
    from jgan import translation, visual
    from jgan.errors import ConfigError

    translator = translation.load_translator(source, args.direction)
    arch = translator.arch
    given = [name for name in LATENT_FIGURES if getattr(args, name) not in (None, False)]
    if given:
        raise ConfigError(f"--{given[0]} is a figure of latents, which do not apply to {arch}: its generators "
                          f"translate images; drop it and pass --translate FOLDER")
    if args.translate is None:
        raise ConfigError(f"{translator.checkpoint} is a {arch} checkpoint, which translates images instead of "
                          f"drawing them from latents; pass --translate FOLDER")
    print(f"generate: {arch} {args.direction} from {translator.checkpoint} ({translator.size} px)", file=sys.stderr)
    triples, skipped = translation.translate_folder(translator, args.translate)
    prefix = f"{Path(translator.checkpoint).parent.name}-{translator.run_step:07d}-{args.direction}"
    for name, (_, translated, _) in triples.items():
        visual.save_image(translated, out / prefix / Path(name).with_suffix(".png"))
    figure = visual.save_image(translation.triples_grid(triples, args.n, args.nrow), out / f"{prefix}.png")
    if skipped:
        print(f"generate: skipped {len(skipped)} unreadable files, e.g. {skipped[0][0]} ({skipped[0][1]})",
              file=sys.stderr)
    print(f"{out / prefix}/ ({len(triples)} translations)")
    print(figure)


def chosen_source(args):
    """-g as given; else the newest run (of StyleGAN for its figures); else, when there is no run
    at all, the pretrained default model (for StyleGAN's figures, the default or the first
    pretrained StyleGAN), said in one line."""
    from jgan import checkpoint, pretrained, registry

    if args.checkpoint:
        return args.checkpoint
    archs = registry.names(styled=True) if args.mixing or args.noise else None
    default = pretrained.default_name(archs=archs)
    if not pretrained.run_rows(args.checkpoint_dir) and default is not None:
        print(f"generate: no run in {args.checkpoint_dir}/, so the pretrained model {default} draws the figures "
              f"(train one, or pick another with -g)", file=sys.stderr)
        return f"pretrained/{default}"
    return checkpoint.newest_run(args.checkpoint_dir, archs)


def main(args):
    from jgan import registry, runtime

    runtime.init(args.device)
    from jgan import checkpoint, generation, pretrained, visual

    if args.list:
        print("\n".join(pretrained.listing(args.checkpoint_dir)))
        return
    from jgan.errors import ConfigError

    mixing_range = generation.parse_mixing_range(args.mixing_range)
    out = writable_folder(args.out, "--out")
    print(runtime.startup_line(), file=sys.stderr)
    source = chosen_source(args)
    kind, where = pretrained.locate(source, args.checkpoint_dir)
    if kind == "pretrained":
        generator = pretrained.load_trained(where, ema=not args.no_ema)
    elif args.translate is not None or registry.get(checkpoint.load_checkpoint(where)["arch"]).translates:
        return translate(args, where, out)
    else:
        generator = generation.load_trained(where, ema=not args.no_ema)
    if generator.name and (args.progress or args.translate is not None):
        flag = "--progress" if args.progress else "--translate"
        raise ConfigError(f"{flag} needs a run's checkpoints, but {generator.name} is a pretrained model "
                          f"(its final generator alone); drop {flag} or pass -g with a run")
    truncation = generator.truncation_inputs(args.truncation, args.truncation_cutoff)
    prefix = generator.label
    origin = f"pretrained model {generator.name} ({generator.checkpoint})" if generator.name else generator.checkpoint
    print(f"generate: {generator.arch} from {origin} ({generator.size} px)", file=sys.stderr)
    written = []
    images, sample_grid = generation.sample_grid(generator, args.n, args.nrow, args.seed, **truncation)
    written.append(visual.save_image(sample_grid, out / f"{prefix}-samples.png"))
    if args.separate:
        for index, image in enumerate(visual.to_uint8(images)):
            visual.save_image(image, out / f"{prefix}-samples" / f"{index:04d}.png")
        written.append(out / f"{prefix}-samples" / f"{{0000..{args.n - 1:04d}}}.png")
    if args.walk:
        frames = generation.latent_walk_frames(generator, min(args.n, 16), 4, args.seed, **truncation)
        written.append(visual.save_gif(frames, out / f"{prefix}-walk.gif"))
    if args.progress:
        frames = generation.progress_frames(generator.checkpoint, min(args.n, 16), 4, ema=not args.no_ema)
        written.append(visual.save_gif(frames, out / f"{prefix}-progress.gif", seconds_per_frame=0.4))
    if args.mixing:
        figure = generation.style_mixing_figure(generator, 5, 3, mixing_range, args.seed, **truncation)
        written.append(visual.save_image(figure, out / f"{prefix}-mixing-{args.mixing_range.replace(',', '-')}.png"))
    if args.noise:
        figure = generation.noise_figure(generator, 3, 6, args.seed, **truncation)
        written.append(visual.save_image(figure, out / f"{prefix}-noise.png"))
    if args.interpolate:
        figure = generation.interpolation_grid(generator, 8, args.seed, **truncation)
        written.append(visual.save_image(figure, out / f"{prefix}-interpolation.png"))
    for path in written:
        print(path)


if __name__ == "__main__":
    run(main, build_parser())
