"""Reading LMDBs (ours and rosinality's) and the Jittor dataset and loader over them."""
import io
import multiprocessing
import os
import random

import lmdb
import numpy as np
import pytest
from PIL import Image

from conftest import TINY_COUNT, shape_image
from jgan.data import ImageDataset, LMDBImages, make_loader
from jgan.errors import ConfigError, DataError


def write_lmdb(path, records):
    with lmdb.open(str(path), map_size=2 ** 24) as env, env.begin(write=True) as txn:
        for key, value in records.items():
            txn.put(key.encode("utf-8"), value)
    return path


def rosinality_lmdb(path, images, sizes, quality=100):
    """An LMDB written the way rosinality's prepare_data.py writes it: JPEG bytes, no meta."""
    records = {"length": str(len(images)).encode("utf-8")}
    for index, image in enumerate(images):
        for size in sizes:
            buffer = io.BytesIO()
            image.resize((size, size), Image.LANCZOS).save(buffer, format="jpeg", quality=quality)
            records[f"{size}-{str(index).zfill(5)}"] = buffer.getvalue()
    return write_lmdb(path, records)


def expected_pixels(images, size, index):
    return images.image(size, index).transpose(2, 0, 1).astype(np.float32) / 127.5 - 1


# ----- LMDBImages ---------------------------------------------------------------------------


def test_reads_an_lmdb_in_rosinalitys_layout(tmp_path):
    sources = [shape_image(i).resize((40, 40)) for i in range(3)]
    path = rosinality_lmdb(tmp_path / "rosinality", sources, sizes=(8, 16, 32))
    images = LMDBImages(path)
    assert images.meta is None
    assert images.sizes == [8, 16, 32], "sizes are found by probing keys SIZE-00000"
    assert images.length == 3
    pixels = images.image(16, 2)
    assert pixels.dtype == np.uint8 and pixels.shape == (16, 16, 3)
    expected = np.asarray(sources[2].resize((16, 16), Image.LANCZOS)).astype(int)
    difference = np.abs(pixels.astype(int) - expected).mean()
    assert difference < 3, f"decoded JPEG differs from its source by {difference:.2f} on average"


def test_reads_our_lmdb_with_its_meta(tiny_lmdb):
    images = LMDBImages(tiny_lmdb)
    assert images.sizes == [8, 16, 32] and images.length == TINY_COUNT
    assert images.meta["count"] == TINY_COUNT and images.meta["encoding"] == "png"
    assert images.image(32, TINY_COUNT - 1).shape == (32, 32, 3)


def test_missing_path_and_folders_that_are_not_lmdbs(tmp_path):
    with pytest.raises(DataError, match="does not exist; create one with `python prepare_data.py"):
        LMDBImages(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "file").write_text("hello")
    for path in (tmp_path / "plain", tmp_path / "file"):
        with pytest.raises(DataError, match=f"{path} is not an LMDB made by prepare_data.py; "
                                            f"create one with `python prepare_data.py --out {path} FOLDER`"):
            LMDBImages(path)


def test_lmdb_without_length_or_images_is_a_data_error(tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    no_length = write_lmdb(tmp_path / "no_length", {"8-00000": png.getvalue()})
    with pytest.raises(DataError, match="no `length` key"):
        LMDBImages(no_length)
    no_images = write_lmdb(tmp_path / "no_images", {"length": b"1"})
    with pytest.raises(DataError, match="holds no images"):
        LMDBImages(no_images)


def test_missing_size_and_missing_index_are_data_errors(tmp_path, tiny_lmdb):
    with pytest.raises(DataError, match="has sizes 8, 16, 32; choose one of them"):
        LMDBImages(tiny_lmdb).image(64, 0)
    with pytest.raises(DataError, match="has sizes 8, 16, 32; choose one of them"):
        ImageDataset(tiny_lmdb, 64)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    gap = write_lmdb(tmp_path / "gap", {"length": b"2", "8-00000": png.getvalue()})
    with pytest.raises(DataError, match="has no image 8-00001"):
        LMDBImages(gap).image(8, 1)


# ----- ImageDataset and make_loader ---------------------------------------------------------


def test_dataset_gives_float32_chw_in_minus_one_to_one(tiny_lmdb):
    dataset = ImageDataset(tiny_lmdb, 16, flip=False)
    item = dataset[5]
    assert item.dtype == np.float32 and item.shape == (3, 16, 16)
    np.testing.assert_array_equal(item, expected_pixels(LMDBImages(tiny_lmdb), 16, 5))
    assert item.min() >= -1 and item.max() == 1, "the white background must map to exactly 1"
    assert len(np.unique(item)) > 2, "a real image, not a constant"


def test_flip_mirrors_some_draws_horizontally(tiny_lmdb):
    unflipped = expected_pixels(LMDBImages(tiny_lmdb), 32, 0)
    mirrored = unflipped[:, :, ::-1]
    assert not np.array_equal(unflipped, mirrored), "the test image must not be symmetric"
    dataset = ImageDataset(tiny_lmdb, 32, flip=True)
    random.seed(0)
    draws = [dataset[0] for _ in range(40)]
    plain = sum(np.array_equal(d, unflipped) for d in draws)
    flipped = sum(np.array_equal(d, mirrored) for d in draws)
    assert plain + flipped == 40 and plain > 5 and flipped > 5, (plain, flipped)


def test_loader_batches(tiny_lmdb):
    loader = make_loader(tiny_lmdb, 8, 4, shuffle=False, flip=False)
    batches = list(loader)
    assert len(batches) == TINY_COUNT // 4
    first = batches[0].numpy()
    assert first.shape == (4, 3, 8, 8) and first.dtype == np.float32
    images = LMDBImages(tiny_lmdb)
    np.testing.assert_array_equal(first[3], expected_pixels(images, 8, 3))


def test_loader_drops_the_last_partial_batch(tiny_lmdb):
    assert [b.shape[0] for b in make_loader(tiny_lmdb, 8, 10, flip=False)] == [10, 10]
    assert [b.shape[0] for b in make_loader(tiny_lmdb, 8, 10, flip=False, drop_last=False)] == [10, 10, 4]


@pytest.mark.parametrize("batch_size", [0, TINY_COUNT + 1])
def test_batch_size_must_fit_the_images(tiny_lmdb, batch_size):
    with pytest.raises(ConfigError, match=f"batch size {batch_size} does not fit the {TINY_COUNT} images"):
        make_loader(tiny_lmdb, 8, batch_size)


def test_each_loader_draws_a_new_shuffle_order(tiny_lmdb):
    np.random.seed(0)
    first = next(iter(make_loader(tiny_lmdb, 8, 8, flip=False))).numpy()
    second = next(iter(make_loader(tiny_lmdb, 8, 8, flip=False))).numpy()
    assert not np.array_equal(first, second)


def in_forked_child(function):
    """The (picklable) result of function() run in a forked child process."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=lambda: queue.put(function()))
    child.start()
    result = queue.get(timeout=60)
    child.join()
    return result


def test_a_forked_worker_reads_through_its_own_lmdb_environment(tiny_lmdb):
    dataset = ImageDataset(tiny_lmdb, 8, flip=False)
    inherited = dataset.images.env

    def read_in_child():
        item = dataset[0]
        return dataset.images.env is not inherited, item.shape
    assert in_forked_child(read_in_child) == (True, (3, 8, 8))
    assert dataset.images.env is inherited and dataset[0].shape == (3, 8, 8), "the parent keeps its own"


def test_switching_resolution_with_workers_serves_the_new_size(tiny_lmdb):
    images = LMDBImages(tiny_lmdb)
    loaders = []
    try:
        for size in (8, 32, 16):
            loader = make_loader(tiny_lmdb, size, 4, shuffle=False, flip=False, num_workers=2)
            loaders.append(loader)
            batch = next(iter(loader)).numpy()
            assert [w.p.pid != os.getpid() and w.p.is_alive() for w in loader.workers] == [True, True]
            assert batch.shape == (4, 3, size, size), f"asked for {size} px, the workers served {batch.shape}"
            np.testing.assert_array_equal(batch[0], expected_pixels(images, size, 0))
    finally:
        for loader in loaders:
            loader.terminate()
