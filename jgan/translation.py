"""Translating a folder of images with a trained image-to-image model (CycleGAN): each image,
its translation and its reconstruction (translated back)."""
from dataclasses import dataclass
from pathlib import Path

import jittor as jt
import numpy as np

from jgan import checkpoint as ckpt
from jgan import registry
from jgan.errors import ConfigError
from jgan.prepare import UNREADABLE, describe, list_files, load_rgb, no_usable_images, resize_and_crop
from jgan.visual import grid, to_uint8

CHUNK = 16   # images translated in one call


@dataclass
class Translator:
    """The two generators of one direction of a checkpoint, in evaluation mode."""
    forward: object           # e.g. G_ab for a2b
    backward: object          # the way back, for the reconstruction
    size: int
    arch: str
    checkpoint: str
    run_step: int

    def translate(self, images):
        """Translations of NCHW images in [-1, 1], as a numpy array."""
        with jt.no_grad():
            return self.forward(jt.array(images)).numpy()

    def round_trip(self, images):
        """(translations, reconstructions) of NCHW images in [-1, 1], as numpy arrays."""
        with jt.no_grad():
            translated = self.forward(jt.array(images))
            return translated.numpy(), self.backward(translated).numpy()


def load_translator(path, direction="a2b"):
    """The Translator of a checkpoint file or run folder of an image-to-image arch."""
    document = ckpt.load_checkpoint(path)
    arch = registry.get(document["arch"])
    if not arch.translates:
        raise ConfigError(f"--translate needs an image-to-image checkpoint such as cyclegan's, but "
                          f"{document['path']} is {arch.name}, which draws images from latents; pass -g "
                          f"with a cyclegan run")
    model_class, config = arch.model_class(), document["config"]
    if direction not in model_class.directions:
        raise ConfigError(f"unknown direction {direction!r}; choose {' or '.join(model_class.directions)}")
    generators = []
    for name in model_class.directions[direction]:
        generator = model_class.build_generator(config["model"])
        ckpt.load_module_state(generator, document["networks"][name], name.replace("_", " "))
        generator.eval()
        generators.append(generator)
    return Translator(*generators, config["model"]["size"], arch.name, document["path"], document["step"])


def read_folder(folder, size):
    """({relative path: (size, size, 3) uint8 image}, [(unreadable path, why)]) of an image folder,
    prepared as prepare_data.py prepares training images (on white, resized, centre-cropped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--translate folder {folder} does not exist; pass a folder of images")
    files, ignored = list_files(folder)
    images, skipped = {}, []
    for name in files:
        try:
            images[name] = np.asarray(resize_and_crop(load_rgb(folder / name), size))
        except UNREADABLE as error:
            skipped.append((name, describe(error)))
    if not images:
        raise no_usable_images(folder, skipped, ignored)
    return images, skipped


def translate_folder(translator, folder):
    """{relative path: (input, translation, reconstruction) as HWC uint8} of every image of `folder`,
    and the files that could not be read."""
    images, skipped = read_folder(folder, translator.size)
    names = list(images)
    pixels = np.stack([images[name] for name in names]).transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
    triples = {}
    for start in range(0, len(names), CHUNK):
        chunk = pixels[start:start + CHUNK]
        translated, reconstructed = translator.round_trip(chunk)
        for offset, triple in enumerate(zip(*(to_uint8(x) for x in (chunk, translated, reconstructed)))):
            triples[names[start + offset]] = triple
    return triples, skipped


def triples_grid(triples, n, per_row):
    """The first n (input, translation, reconstruction) triples side by side, `per_row` triples a row."""
    chosen = list(triples.values())[:n]
    return grid(np.stack([image for triple in chosen for image in triple]), nrow=3 * per_row)


def evaluate_translation(translator, source_lmdb, target_lmdb, metrics=("swd",), n=10000, seed=0, batch=16,
                         inception=None, cache_dir=None, progress=False):
    """{"translated": the metrics of the translations of up to n images of the source domain against
    up to n images of the target domain, "untranslated": the same for the source images themselves
    (where the translation starts from)}, at the translator's size."""
    from jgan import metrics as evaluation
    from jgan.data import LMDBImages
    from jgan.metrics.features import quantize, real_images, real_indices
    options = evaluation.settings(metrics, n, seed, batch, inception, cache_dir, progress)
    source, target = LMDBImages(source_lmdb), LMDBImages(target_lmdb)
    for data in (source, target):
        data.check_size(translator.size)
    originals = real_images(source, translator.size, real_indices(source.length, n))
    scaled = originals.astype(np.float32) / 127.5 - 1
    translated = np.concatenate([quantize(translator.translate(scaled[start:start + CHUNK]))
                                 for start in range(0, len(scaled), CHUNK)])
    indices = real_indices(target.length, n)
    return {"translated": evaluation.compare(target, translator.size, indices, translated, options),
            "untranslated": evaluation.compare(target, translator.size, indices, originals, options)}
