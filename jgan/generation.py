"""Using a trained generator: loading it from a checkpoint or a pretrained model and making the
figures of generate.py."""
from dataclasses import dataclass
from pathlib import Path

import jittor as jt
import numpy as np

from jgan import checkpoint as ckpt
from jgan import registry
from jgan.errors import ConfigError
from jgan.schedule import build_schedule
from jgan.visual import grid, to_uint8

MIXING_RANGES = {"coarse": (0, 1), "middle": (2, 3), "fine": (4, 8)}  # by resolution: 4-8, 16-32, 64+ px


@dataclass
class TrainedGenerator:
    """A generator in eval mode with what is needed to call it at the resolution it reached."""
    module: object
    arch: str
    latent_dim: int
    level: int = 0              # resolution index (log2(size) - 2) the generator reached
    alpha: float = 1.0
    checkpoint: str = ""
    sample_inputs: np.ndarray = None   # the run's fixed sample latents
    run_step: int = 0           # the training step of the checkpoint
    name: str = ""              # the pretrained model's name ("" for a checkpoint)

    @property
    def progressive(self):
        return registry.get(self.arch).progressive

    @property
    def styled(self):
        return registry.get(self.arch).styled

    @property
    def size(self):
        return 4 * 2 ** self.level

    @property
    def label(self):
        """How output files are named: the pretrained model, or the run and step."""
        return self.name or f"{Path(self.checkpoint).parent.name}-{self.run_step:07d}"

    def inputs(self):
        return {"level": self.level, "alpha": self.alpha} if self.progressive else {}

    def __call__(self, z, **kwargs):
        with jt.no_grad():
            return self.module(z, **self.inputs(), **kwargs)

    def average_latent(self):
        """The running average w tracked in training, or (for a run that tracked none) a sample mean."""
        w_avg = self.module.w_avg
        if float(w_avg.abs().sum().item()) > 0:
            return w_avg
        with jt.no_grad():
            return self.module.mean_style(jt.randn(4096, self.latent_dim))

    def truncation_inputs(self, psi, cutoff=None):
        """Keyword arguments for truncation psi around the average latent (StyleGAN only)."""
        if psi is None or psi >= 1:
            return {}
        if not self.styled:
            raise ConfigError(f"--truncation applies to StyleGAN checkpoints only, not to "
                              f"{self.arch}; drop it")
        kwargs = {"mean_style": self.average_latent(), "style_weight": psi}
        if cutoff is not None:
            kwargs["truncation_cutoff"] = cutoff
        return kwargs


def load_trained(path, ema=True, checkpoint_dir=None):
    """The generator of a jgan checkpoint file or run folder, or of a pretrained model (NAME,
    pretrained/NAME or its .npz file; jgan.pretrained), in eval mode. With `checkpoint_dir`, a
    bare NAME is first looked for as a run there."""
    from jgan import pretrained
    kind, where = pretrained.locate(path, checkpoint_dir)
    if kind == "pretrained":
        return pretrained.load_trained(where, ema)
    document = ckpt.load_checkpoint(where)
    config, arch = document["config"], registry.get(document["arch"])
    generator = arch.model_class().build_generator(config["model"])
    ckpt.load_module_state(generator, document["networks"][sampling_key(document, ema)], "generator")
    generator.eval()
    phase = reached_phase(document)
    return TrainedGenerator(generator, arch.name, arch.latent_size(config["model"]), phase.level, phase.alpha,
                            document["path"], document.get("sample_inputs"), document["step"])


def sampling_key(document, ema=True):
    """The name, in a checkpoint's networks, of the generator it samples with: its EMA when it has
    one (and `ema`), else the trained generator."""
    modules = registry.get(document["arch"]).model_class().sampling_modules
    candidates = modules if ema else modules[-1:]
    key = next((name for name in candidates if name in document["networks"]), None)
    if key is None:
        raise ckpt.CheckpointError(f"{document['path']} holds no generator ({' or '.join(candidates)}); "
                                   f"pass a checkpoint written by train.py")
    return key


def reached_phase(document):
    """The schedule's phase (size, level, fade-in) at the checkpoint's images shown."""
    return build_schedule(document["config"]).phase(document["images"])


def load_generator(path, ema=True):
    """The generator module of any jgan checkpoint or run folder, or of a pretrained model by
    name (e.g. "emoji-stylegan", listed in pretrained/models.yaml), in eval mode.

    A progressive generator (StyleGAN) is called as `G(z, level=G.trained_level,
    alpha=G.trained_alpha)`: the resolution it reached (4 * 2**level px) and its fade-in."""
    trained = load_trained(path, ema)
    trained.module.trained_level, trained.module.trained_alpha = trained.level, trained.alpha
    return trained.module


LATENT_STREAM = 1


def latent_rng(seed):
    """The numpy generator of a figure's or a metric's latents for `seed`. Not RandomState(seed):
    training seeds numpy's global generator with train.seed and draws the initial weights from it,
    so the latents of that seed would be the rows of the first mapping layer (which, at a hundredth
    of the learning rate, stay near them) and a StyleGAN would draw its worst images for them."""
    return np.random.RandomState([seed, LATENT_STREAM])


def random_z(n, dim, seed):
    return latent_rng(seed).randn(n, dim).astype(np.float32)


def seed_noise(seed):
    """Seed Jittor's generator, which draws a StyleGAN's noise maps when none are given, so that
    a figure of one seed is the same in every run (the latents come from `random_z`)."""
    jt.set_seed(seed)


def synthesize(generator, z, chunk=64, **kwargs):
    """Images (NCHW floats in [-1, 1]) for latents `z`, in chunks to bound memory."""
    parts = [generator(jt.array(z[i:i + chunk]), **kwargs).numpy() for i in range(0, len(z), chunk)]
    return np.concatenate(parts)


def sample_grid(generator, n, nrow, seed, **kwargs):
    seed_noise(seed)
    images = synthesize(generator, random_z(n, generator.latent_dim, seed), **kwargs)
    return images, grid(to_uint8(images), nrow)


def latent_walk_frames(generator, n, nrow, seed, points=4, steps=12, **kwargs):
    """Grid frames moving linearly in z through `points` random endpoints and back to the first."""
    ends = latent_rng(seed).randn(points, n, generator.latent_dim).astype(np.float32)
    frames = []
    for a, b in zip(ends, np.roll(ends, -1, axis=0)):
        for t in np.linspace(0, 1, steps, endpoint=False):
            z = ((1 - t) * a + t * b).astype(np.float32)
            seed_noise(seed)   # the same noise maps in every frame: only z moves
            frames.append(grid(to_uint8(synthesize(generator, z, **kwargs)), nrow))
    return frames


def progress_frames(run_path, n, nrow, ema=True):
    """Grids of the run's fixed noise through every saved checkpoint, oldest first; images of
    earlier (smaller) progressive phases are enlarged to the final size."""
    run_dir = ckpt.resolve(run_path).parent
    batches = []
    for path in ckpt.numbered_checkpoints(run_dir):
        trained = load_trained(path, ema)
        z = trained.sample_inputs[:n] if trained.sample_inputs is not None else random_z(n, trained.latent_dim, 0)
        batches.append(synthesize(trained, z))
    size = max(images.shape[-1] for images in batches)
    return [grid(to_uint8(_enlarge(images, size)), nrow) for images in batches]


def _enlarge(images, size):
    """Nearest-neighbour enlargement of NCHW images to `size` pixels."""
    factor = size // images.shape[-1]
    return images.repeat(factor, axis=2).repeat(factor, axis=3) if factor > 1 else images


def parse_mixing_range(text):
    """'coarse' | 'middle' | 'fine' | 'A,B' (resolution indices, 0 = 4 px) -> (A, B)."""
    if text in MIXING_RANGES:
        return MIXING_RANGES[text]
    try:
        start, end = (int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--mixing-range {text!r} must be coarse, middle, fine or two indices "
                          f"like 0,1") from None
    if not 0 <= start <= end:
        raise ConfigError(f"--mixing-range {text!r} needs 0 <= start <= end")
    return start, end


def _require_styles(generator, figure):
    if not generator.styled:
        raise ConfigError(f"--{figure} needs a StyleGAN checkpoint, but {generator.checkpoint} is "
                          f"{generator.arch}, whose generator takes no styles or noise; pass -g with "
                          f"a StyleGAN run")


def style_mixing_figure(generator, n_source, n_dest, mixing_range, seed, **kwargs):
    """Top row: sources; left column: destinations; cell (i, j): destination i with source j's
    styles on the resolutions of `mixing_range` (Karras et al. 2019, Fig. 3)."""
    _require_styles(generator, "mixing")
    seed_noise(seed)
    z_source = random_z(n_source, generator.latent_dim, seed)
    z_dest = random_z(n_dest, generator.latent_dim, seed + 1)
    sources = to_uint8(synthesize(generator, z_source, **kwargs))
    dests = to_uint8(synthesize(generator, z_dest, **kwargs))
    blank = np.full_like(sources[:1], 255)
    rows = [np.concatenate([blank, sources])]
    for index in range(n_dest):
        z_row = np.repeat(z_dest[index:index + 1], n_source, axis=0)
        with jt.no_grad():
            mixed = generator.module([jt.array(z_row), jt.array(z_source)], **generator.inputs(),
                                     mixing_range=mixing_range, **kwargs)
        rows.append(np.concatenate([dests[index:index + 1], to_uint8(mixed)]))
    return grid(np.concatenate(rows), nrow=n_source + 1)


def noise_inputs(generator, batch, rng):
    """One noise map per conv layer (two per resolution) up to the generator's level."""
    maps = []
    for index in range(generator.level + 1):
        size = 4 * 2 ** index
        maps += [jt.array(rng.randn(batch, 1, size, size).astype(np.float32)) for _ in range(2)]
    return maps


def noise_figure(generator, n_latents, n_noises, seed, n_std=32, **kwargs):
    """Rows: one latent each; columns: that latent under different noise, then the per-pixel
    standard deviation over `n_std` noises (white = most affected by noise)."""
    _require_styles(generator, "noise")
    rng = np.random.RandomState(seed)
    z = random_z(n_latents, generator.latent_dim, seed)
    rows = []
    for index in range(n_latents):
        z_row = jt.array(np.repeat(z[index:index + 1], max(n_noises, n_std), axis=0))
        images = generator(z_row, noise=noise_inputs(generator, z_row.shape[0], rng), **kwargs).numpy()
        std = images.std(axis=0).mean(axis=0)
        std_image = np.repeat((std / max(std.max(), 1e-8) * 255).astype(np.uint8)[..., None], 3, axis=2)
        rows.append(np.concatenate([to_uint8(images[:n_noises]), std_image[None]]))
    return grid(np.concatenate(rows), nrow=n_noises + 1)


def interpolation_grid(generator, n, seed, **kwargs):
    """n x n grid: four random latents at the corners, bilinear interpolation in between."""
    seed_noise(seed)
    corners = random_z(4, generator.latent_dim, seed)
    t = np.linspace(0, 1, n, dtype=np.float32)
    top = (1 - t)[:, None] * corners[0] + t[:, None] * corners[1]
    bottom = (1 - t)[:, None] * corners[2] + t[:, None] * corners[3]
    z = np.concatenate([(1 - s) * top + s * bottom for s in t]).astype(np.float32)
    return grid(to_uint8(synthesize(generator, z, **kwargs)), nrow=n)
