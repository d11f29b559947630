"""LMDB made by prepare_data.py (layout: jgan.prepare) -> batches of Jittor Vars for training."""
import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, repeat

import lmdb
import numpy as np

from jgan.errors import ConfigError, DataError
from jgan.prepare import LENGTH_KEY, META_KEY, UNREADABLE, decode_record, how_to_create, image_key

PROBE_SIZES = tuple(2 ** k for k in range(2, 11))  # 4 .. 1024: the sizes of a LMDB without meta
BAD_FRACTION = 0.01  # training stops when more of an LMDB's records than this cannot be decoded
AHEAD_BYTES = 64 * 2 ** 20   # decoded batches the loader threads may hold ahead of training



# LMDB lets a process open an environment once, and one must not be used across a fork; so each
# process keeps one read-only environment per LMDB: {(st_dev, st_ino) of data.mdb: (pid, env)}.
_ENVIRONMENTS = {}


def open_readonly(path):
    """This process's read-only environment of the LMDB at `path` (one inherited by fork is reopened)."""
    try:
        stat = os.stat(os.path.join(path, "data.mdb"))
        key = (stat.st_dev, stat.st_ino)
        opened_by, env = _ENVIRONMENTS.get(key, (None, None))
        if opened_by == os.getpid():
            return env
        if env is not None:
            env.close()  # the parent's copy: closing it in this process leaves the parent's open
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
    except (OSError, lmdb.Error):
        raise DataError(f"{path} is not an LMDB made by prepare_data.py; {how_to_create(path)}") from None
    _ENVIRONMENTS[key] = (os.getpid(), env)
    return env


class LMDBImages:
    """Read-only access to an LMDB made by prepare_data.py (or by rosinality's prepare_data.py)."""

    def __init__(self, path):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise DataError(f"{self.path} does not exist; {how_to_create(self.path)}")
        self.env = open_readonly(self.path)
        length, meta = self.get(LENGTH_KEY), self.get(META_KEY)
        if length is None:
            raise DataError(f"{self.path} has no `length` key, so it is not a complete LMDB; "
                            f"{how_to_create(self.path)}")
        self.length = int(length)
        self.meta = json.loads(meta) if meta is not None else None
        self.sizes = sorted(self.meta["sizes"]) if self.meta else self.probe_sizes()
        if not self.sizes:
            raise DataError(f"{self.path} holds no images (no key `SIZE-00000`); "
                            f"{how_to_create(self.path)}")

    def get(self, key):
        with self.env.begin() as txn:
            return txn.get(key)

    def probe_sizes(self):
        return [size for size in PROBE_SIZES if self.get(image_key(size, 0)) is not None]

    def check_size(self, size):
        if size not in self.sizes:
            raise DataError(f"{self.path} has no {size} px images, it has sizes "
                            f"{', '.join(map(str, self.sizes))}; choose one of them")

    def image(self, size, index):
        """Image `index` at `size` as a uint8 array of shape (size, size, 3)."""
        self.check_size(size)
        if not 0 <= index < self.length:
            raise IndexError(f"image index {index} is outside 0..{self.length - 1}")
        data = self.get(image_key(size, index))
        if data is None:
            raise DataError(f"{self.path} has no image {image_key(size, index).decode()}, so it is "
                            f"incomplete; recreate it with `python prepare_data.py`")
        return decode_record(data, size)


class BadRecords:
    """The records of one LMDB that could not be decoded in training: each logged once, counted."""

    def __init__(self, path, count=0):
        self.path, self.count, self.keys = str(path), count, []   # count: images per size

    def add(self, key, error):
        if key not in self.keys:
            self.keys.append(key)
            print(f"jgan: record {key} of {self.path} cannot be decoded ({type(error).__name__}); another image "
                  f"takes its place", file=sys.stderr)

    def too_many(self):
        """More than BAD_FRACTION of the records (and more than one)."""
        return len(self.keys) > max(1, BAD_FRACTION * self.count)

    def sentence(self):
        return (f"{len(self.keys)} records of the {self.count} images of {self.path} cannot be decoded "
                f"(e.g. {', '.join(self.keys[:3])})")


class ImageDataset:
    """The images of one size of an LMDB as float32 CHW arrays in [-1, 1].

    Key `i` is image i; key `length + i` is image i mirrored (how a StreamSampler asks for flips).
    """

    def __init__(self, path, size, bad=None):
        self.images = LMDBImages(path)
        self.images.check_size(size)
        self.path, self.size = str(path), size
        self.bad = bad or BadRecords(path)
        self.bad.count = self.images.length

    def __len__(self):
        return self.images.length

    def pixels(self, index):
        """Image `index`, or if its record cannot be decoded the next one that can (logged once),
        so that a batch keeps its size."""
        for offset in range(self.images.length):
            candidate = (index + offset) % self.images.length
            try:
                return self.images.image(self.size, candidate)
            except UNREADABLE as error:
                self.bad.add(image_key(self.size, candidate).decode(), error)
        raise DataError(f"no {self.size} px record of {self.path} can be decoded; recreate it with "
                        f"`python prepare_data.py`")

    def __getitem__(self, key):
        mirrored, index = divmod(key, self.images.length)
        pixels = self.pixels(index)
        if mirrored:
            pixels = pixels[:, ::-1]
        return pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - np.float32(1)

    def batch(self, keys):
        return np.stack([self[key] for key in keys])


def check_batch_size(batch_size, dataset):
    count = len(dataset)
    if batch_size < 1 or batch_size > count:
        raise ConfigError(f"batch size {batch_size} does not fit the {count} images of "
                          f"{dataset.path}; choose a batch size between 1 and {count}")


class BatchLoader:
    """Full batches of an ImageDataset as (B, 3, size, size) Vars, in the key order of `sampler`.

    Each iteration is one pass over `iter(sampler)` (default: every image once, in order); a last
    partial batch is dropped. Under MPI, rank r of w takes the r-th w-th of every global batch.
    With `num_workers` > 0, that many threads decode the next batches while the caller trains:
    decoding and numpy release the GIL, and threads need no fork of a process that runs Jittor,
    whose own forked loader workers crashed it now and then.
    """

    def __init__(self, dataset, batch_size, sampler=None, num_workers=0, rank=0, world=1):
        check_batch_size(batch_size, dataset)
        if num_workers < 0:
            raise ConfigError(f"the number of loader workers must be 0 or more, got {num_workers}")
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.sampler = range(len(dataset)) if sampler is None else sampler
        self.share = slice(rank * batch_size // world, (rank + 1) * batch_size // world)

    def key_batches(self):
        keys = list(self.sampler)
        return [keys[start:start + self.batch_size][self.share]
                for start in range(0, len(keys) - self.batch_size + 1, self.batch_size)]

    def __iter__(self):
        import jittor as jt   # here, so that a PyTorch data loader can read the LMDB without Jittor
        if self.num_workers == 0:
            decoded = map(self.dataset.batch, self.key_batches())
        else:
            decoded = self.decode_ahead(self.key_batches())
        for pixels in decoded:
            yield jt.array(pixels)

    def lookahead(self):
        """How many batches the worker threads decode ahead: two per thread, or as many as fit in
        AHEAD_BYTES if more. A lazy step asks for all its batches (WGAN's 5 critic steps and the
        generator's: 6) before it computes anything, so the threads should hold them by then."""
        batch_bytes = 4 * 3 * self.dataset.size ** 2 * len(range(self.batch_size)[self.share])
        return max(2 * self.num_workers, AHEAD_BYTES // batch_bytes)

    def decode_ahead(self, key_batches):
        """The decoded batches, in order, with up to `lookahead()` decoded ahead."""
        ahead = self.lookahead()
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="jgan-loader") as pool:
            pending = deque()
            try:
                for keys in key_batches:
                    pending.append(pool.submit(self.dataset.batch, keys))
                    if len(pending) > ahead:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()


class StreamSampler:
    """The images a training run is shown, as a pure function of (seed, images shown so far).

    Epoch e is a permutation drawn from (seed, e), and each image of it is mirrored or not by a
    coin drawn with it; epochs follow each other without a gap. A loader asks for one pass of keys
    at a time: each pass continues where the last ended, so a run resumed at `start` images sees
    exactly what the uninterrupted run would have seen."""

    def __init__(self, count, seed, start=0, flip=True, pass_length=4096):
        self.count, self.seed, self.position, self.flip = count, seed, start, flip
        self.pass_length = pass_length

    def epoch(self, number):
        rng = np.random.RandomState([self.seed % 2 ** 31, number % 2 ** 31])
        order = rng.permutation(self.count)
        mirrored = rng.rand(self.count) < 0.5 if self.flip else np.zeros(self.count, bool)
        return order + self.count * mirrored

    def take(self, start, length):
        """`length` keys of the stream from position `start`."""
        keys = []
        number, offset = divmod(start, self.count)
        while len(keys) < length:
            keys.extend(self.epoch(number)[offset:offset + length - len(keys)].tolist())
            number, offset = number + 1, 0
        return keys

    def __iter__(self):
        keys = self.take(self.position, self.pass_length)
        self.position += self.pass_length
        return iter(keys)


def training_stream(path, size, batch_size, seed, start=0, flip=True, num_workers=0, rank=0, world=1, bad=None):
    """Endless global batches (this rank's share) of the `size` px images, in StreamSampler order
    from image `start` on, undecodable records counted in `bad` (BadRecords); a bad size or batch
    fails here, before the first batch. Call it again when the resolution or the batch changes."""
    dataset = ImageDataset(path, size, bad)
    check_batch_size(batch_size, dataset)
    passes = max(1, 4096 // batch_size)
    sampler = StreamSampler(len(dataset), seed, start, flip, pass_length=passes * batch_size)
    loader = BatchLoader(dataset, batch_size, sampler, num_workers, rank, world)
    return chain.from_iterable(repeat(loader))
