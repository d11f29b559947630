"""Folder of images -> multi-resolution LMDB: what prepare_data.py runs. It never imports Jittor.

The LMDB layout is defined here, and jgan.data reads it. It is rosinality/style-based-gan-pytorch's,
so either tool reads the other's:
    b"length"             -> the image count as a decimal string
    b"{size}-{index:05d}" -> one encoded image (PNG or JPEG), size x size RGB
and jgan adds b"meta" -> JSON (sizes, count, encoding, source folder, jgan version).
"""
import io
import json
import multiprocessing
import os
import shutil
import signal
import struct
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import lmdb
import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from jgan import __version__
from jgan.errors import ConfigError, DataError

LENGTH_KEY = b"length"
META_KEY = b"meta"
DEFAULT_SIZES = (8, 16, 32, 64, 128)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
FORMATS = ("png", "jpeg")
WHITE = (255, 255, 255, 255)
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# What Pillow raises for a file it cannot decode (truncated, corrupt, not an image, too large).
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)
INITIAL_MAP_SIZE = 64 * 2 ** 20  # bytes; doubled whenever the LMDB fills up
WRITE_EVERY = 64  # images per write transaction
SHOWN_SKIPPED = 5


def image_key(size, index):
    """The LMDB key of image `index` at `size`, as rosinality writes it."""
    return f"{size}-{str(index).zfill(5)}".encode("utf-8")


def decode_record(data, size):
    """The pixels (size, size, 3) uint8 of one stored image; one of UNREADABLE if it is not one."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))
    if pixels.shape != (size, size, 3):
        raise ValueError(f"a {pixels.shape[1]}x{pixels.shape[0]} image where {size}x{size} belongs")
    return pixels


def verify_lmdb(path):
    """(records checked, [(key, why it is bad)]) over every image of every size of an LMDB."""
    path = Path(path)
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False)
    except lmdb.Error:
        raise DataError(f"{path} is not an LMDB made by prepare_data.py; {how_to_create(path)}") from None
    with env.begin() as txn:
        length = txn.get(LENGTH_KEY)
        if length is None:
            raise DataError(f"{path} has no `length` key, so it is not a complete LMDB; {how_to_create(path)}")
        sizes = sorted({int(key.split(b"-")[0]) for key in txn.cursor().iternext(values=False)
                        if key.split(b"-")[0].isdigit()})
        bad = []
        for size in sizes:
            for index in range(int(length)):
                data = txn.get(image_key(size, index))
                try:
                    if data is None:
                        raise KeyError("missing")
                    decode_record(data, size)
                except (*UNREADABLE, KeyError) as error:
                    bad.append((image_key(size, index).decode(), f"{type(error).__name__}: {error}"))
    env.close()
    return len(sizes) * int(length), bad


def how_to_create(path):
    return f"create one with `python prepare_data.py --out {path} FOLDER`"


# ----- one image ----------------------------------------------------------------------------


def load_rgb(path):
    """The first frame of an image file as 8-bit RGB, transparency composited on white."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image):
    """Any Pillow mode as 8-bit RGB: 16-bit grey scaled (not clipped), alpha composited on white."""
    if image.mode in SIXTEEN_BIT_MODES:
        image = sixteen_bit_to_grey(image)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return composite_on_white(image.convert("RGBA"))
    return image.convert("RGB")


def sixteen_bit_to_grey(image):
    """16-bit grey (0..65535) to 8-bit grey (0..255): v / 257, rounded."""
    values = np.asarray(image).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L")


def composite_on_white(rgba):
    return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")


def resize_and_crop(image, size):
    """Shorter side resized to `size` (Lanczos), then the centre `size` x `size` square."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = max(size, int(size * long / short))
    new_size = (size, new_long) if width == short else (new_long, size)
    resized = image.resize(new_size, Image.LANCZOS)
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    return resized.crop((left, top, left + size, top + size))


def encode_image(image, image_format, quality):
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def describe(error):
    return f"{type(error).__name__}: {error}"


def encode_file(path, sizes, image_format, quality):
    """(encoded images, one per size; the shorter side) of one file, or (None, why it failed)."""
    try:
        image = load_rgb(path)
    except UNREADABLE as error:
        return None, describe(error)
    encoded = [encode_image(resize_and_crop(image, size), image_format, quality) for size in sizes]
    return encoded, min(image.size)


# ----- writing the LMDB ---------------------------------------------------------------------


@dataclass
class PrepareSummary:
    """What prepare_lmdb did; `report()` is the text prepare_data.py prints."""
    out: str
    count: int
    sizes: tuple
    dropped_sizes: tuple = ()
    largest_short_side: int = 0
    upscaled: int = 0
    skipped: list = field(default_factory=list)  # (relative path, why) of unreadable images
    ignored: list = field(default_factory=list)  # relative paths of files that are not images
    bytes_on_disk: int = 0
    seconds: float = 0.0

    def report(self):
        lines = [f"wrote {self.count} images at sizes {', '.join(map(str, self.sizes))} to "
                 f"{self.out} ({human_bytes(self.bytes_on_disk)}) in {self.seconds:.1f} s"]
        if self.dropped_sizes:
            lines.append(f"dropped sizes {', '.join(map(str, self.dropped_sizes))}: larger than the "
                         f"largest image's shorter side ({self.largest_short_side} px)")
        if self.upscaled:
            lines.append(f"warning: {self.upscaled} images were upscaled to {max(self.sizes)} px "
                         f"(their shorter side is smaller)")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable images, e.g.:")
            lines += [f"  {path} ({why})" for path, why in self.skipped[:SHOWN_SKIPPED]]
        if self.ignored:
            shown = ", ".join(self.ignored[:SHOWN_SKIPPED])
            lines.append(f"ignored {len(self.ignored)} files that are not images, e.g. {shown}")
        return "\n".join(lines)


def human_bytes(count):
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000


def list_files(source):
    """(image files, other files): relative paths under `source`, sorted, as posix strings."""
    files = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    is_image = [f.lower().endswith(IMAGE_EXTENSIONS) for f in files]
    return ([f for f, yes in zip(files, is_image) if yes],
            [f for f, yes in zip(files, is_image) if not yes])


def read_short_sides(source, files):
    """{relative path: shorter side} from the image headers; the unreadable ones as (path, why)."""
    short_sides, skipped = {}, []
    for name in files:
        try:
            with Image.open(source / name) as image:
                short_sides[name] = min(image.size)
        except UNREADABLE as error:
            skipped.append((name, describe(error)))
    return short_sides, skipped


def no_usable_images(source, skipped, ignored):
    if skipped:
        why = f"all {len(skipped)} image files are unreadable, e.g. {skipped[0][0]} ({skipped[0][1]})"
    else:
        among = f" among its {len(ignored)} files" if ignored else ""
        why = f"it holds no jpg, png, webp, bmp, gif or tif files{among}"
    return DataError(f"no usable images in {source}; {why}; add images or choose another folder")


def check_options(sizes, image_format, quality, n_worker):
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"sizes must be positive integers, got {list(sizes)}; pass e.g. --sizes 8 16 32")
    if image_format not in FORMATS:
        raise ConfigError(f"unknown image format {image_format!r}; choose png or jpeg")
    if not 1 <= quality <= 100:
        raise ConfigError(f"JPEG quality must be between 1 and 100, got {quality}")
    if n_worker < 1:
        raise ConfigError(f"--n_worker must be at least 1, got {n_worker}")


def check_out(out, force):
    """Refuse an existing `out` unless `force`; never replace something that is not an LMDB."""
    if not out.exists():
        return
    if not force:
        raise ConfigError(f"{out} already exists; pass --force to replace it or choose another --out")
    if not (out / "data.mdb").is_file():
        raise ConfigError(f"{out} exists and is not an LMDB, so --force will not replace it; "
                          f"choose another --out")


def choose_sizes(sizes, largest_short_side):
    """(kept, dropped): the sizes are capped at the largest image's shorter side."""
    kept = tuple(s for s in sizes if s <= largest_short_side)
    dropped = tuple(s for s in sizes if s > largest_short_side)
    if not kept:
        raise ConfigError(f"every size in {list(sizes)} is larger than the largest image "
                          f"({largest_short_side} px on its shorter side); choose smaller --sizes")
    return kept, dropped


class LMDBWriter:
    """Writes records in batches, doubling the map size whenever the LMDB is full."""

    def __init__(self, path):
        self.env = lmdb.open(str(path), map_size=INITIAL_MAP_SIZE, readahead=False, meminit=False)
        self.pending = []

    def put(self, key, value):
        self.pending.append((key, value))

    def flush(self):
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
        self.pending = []

    def close(self):
        self.env.close()


@contextmanager
def parallel_map(n_worker):
    """`map`, or with n_worker > 1 the ordered `imap` of a pool of forked worker processes.

    Ctrl-C reaches the whole process group; the workers never see it (SIGINT stays blocked in
    them from the fork on), and the main process, which does, ends the pool on the way out.
    """
    if n_worker == 1:
        yield map
        return
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with multiprocessing.get_context("fork").Pool(n_worker) as pool:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
            yield partial(pool.imap, chunksize=8)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)


def write_lmdb(path, results, meta):
    """Writes the readable images with consecutive indices, then `meta` (with the count) and
    `length`; returns (count, upscaled, skipped)."""
    sizes = meta["sizes"]
    count, upscaled, skipped = 0, 0, []
    writer = LMDBWriter(path)
    try:
        for name, (encoded, detail) in results:
            if encoded is None:
                skipped.append((name, detail))
                continue
            for size, data in zip(sizes, encoded):
                writer.put(image_key(size, count), data)
            count += 1
            upscaled += detail < max(sizes)
            if count % WRITE_EVERY == 0:
                writer.flush()
        if count:
            writer.put(META_KEY, json.dumps({**meta, "count": count}).encode("utf-8"))
            writer.put(LENGTH_KEY, str(count).encode("utf-8"))
        writer.flush()
    finally:
        writer.close()
    return count, upscaled, skipped


def folder_size(path):
    return sum(p.stat().st_size for p in Path(path).iterdir())


def publish(temporary, out):
    """Renames the complete LMDB to `out`; an old `out` is removed only once the new one is there."""
    if not out.exists():
        os.rename(temporary, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / out.name)
    os.rename(temporary, out)
    shutil.rmtree(old)


def lmdb_meta(source, sizes, image_format, quality):
    meta = {"sizes": list(sizes), "encoding": image_format, "source": str(source.resolve()),
            "jgan_version": __version__}
    if image_format == "jpeg":
        meta["quality"] = quality
    return meta


def prepare_lmdb(source, out, sizes=DEFAULT_SIZES, image_format="png", quality=95, n_worker=1,
                 force=False, progress=True):
    """Writes every image under `source` at every size to the LMDB `out`; returns a PrepareSummary.

    Images are indexed in the order of their sorted relative paths. The LMDB is written to a
    temporary folder beside `out` and renamed when complete, so `out` never holds half an LMDB,
    and an existing `out` (replaced only with `force`) stays as it was until then.
    """
    started = time.time()
    source, out = Path(source), Path(out)
    sizes = tuple(sorted(set(int(s) for s in sizes)))
    check_options(sizes, image_format, quality, n_worker)
    if not source.is_dir():
        raise DataError(f"image folder {source} does not exist; pass a folder of images")
    check_out(out, force)
    names, ignored = list_files(source)
    short_sides, skipped = read_short_sides(source, names)
    if not short_sides:
        raise no_usable_images(source, skipped, ignored)
    largest = max(short_sides.values())
    sizes, dropped = choose_sizes(sizes, largest)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
    temporary.mkdir()  # not mkdtemp, whose folder only its owner could read once renamed to `out`
    try:
        encode = partial(encode_file, sizes=sizes, image_format=image_format, quality=quality)
        readable = list(short_sides)
        with parallel_map(n_worker) as mapper:
            results = tqdm(zip(readable, mapper(encode, [source / name for name in readable])),
                           total=len(readable), disable=not progress, desc="prepare", unit="img")
            meta = lmdb_meta(source, sizes, image_format, quality)
            count, upscaled, unreadable = write_lmdb(temporary, results, meta)
        skipped = sorted(skipped + unreadable)
        if count == 0:
            raise no_usable_images(source, skipped, ignored)
        check_out(out, force)
        publish(temporary, out)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return PrepareSummary(out=str(out), count=count, sizes=sizes, dropped_sizes=dropped,
                          largest_short_side=largest, upscaled=upscaled, skipped=skipped,
                          ignored=ignored, bytes_on_disk=folder_size(out),
                          seconds=time.time() - started)
