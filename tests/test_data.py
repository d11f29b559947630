"""Reading LMDBs (ours and rosinality's) and the dataset and batch loader over them."""
import io
import multiprocessing
import threading

import lmdb
import numpy as np
import pytest
from PIL import Image

from conftest import TINY_COUNT, shape_image
from jgan import data
from jgan.data import BatchLoader, ImageDataset, LMDBImages
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


# ----- ImageDataset and BatchLoader ---------------------------------------------------------


def test_dataset_gives_float32_chw_in_minus_one_to_one(tiny_lmdb):
    dataset = ImageDataset(tiny_lmdb, 16)
    item = dataset[5]
    assert len(dataset) == TINY_COUNT
    assert item.dtype == np.float32 and item.shape == (3, 16, 16)
    np.testing.assert_array_equal(item, expected_pixels(LMDBImages(tiny_lmdb), 16, 5))
    assert item.min() >= -1 and item.max() == 1, "the white background must map to exactly 1"
    assert len(np.unique(item)) > 2, "a real image, not a constant"


def test_a_key_past_the_count_is_the_mirrored_image(tiny_lmdb):
    dataset = ImageDataset(tiny_lmdb, 32)
    unflipped = expected_pixels(LMDBImages(tiny_lmdb), 32, 3)
    assert not np.array_equal(unflipped, unflipped[:, :, ::-1]), "the test image must not be symmetric"
    np.testing.assert_array_equal(dataset[3], unflipped)
    np.testing.assert_array_equal(dataset[TINY_COUNT + 3], unflipped[:, :, ::-1])


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_follow_the_sampler_and_drop_the_last_partial_batch(tiny_lmdb, workers):
    keys = [5, 30, 2, 7, 11, 0, 9, 47, 1, 3, 4]            # 30 and 47: images 6 and 23 mirrored
    loader = BatchLoader(ImageDataset(tiny_lmdb, 8), 4, keys, num_workers=workers)
    batches = [batch.numpy() for batch in loader]
    assert [b.shape for b in batches] == [(4, 3, 8, 8)] * 2 and batches[0].dtype == np.float32
    dataset = ImageDataset(tiny_lmdb, 8)
    np.testing.assert_array_equal(np.concatenate(batches), np.stack([dataset[k] for k in keys[:8]]))


def test_loader_without_a_sampler_shows_every_image_once_in_order(tiny_lmdb):
    batches = np.concatenate([b.numpy() for b in BatchLoader(ImageDataset(tiny_lmdb, 8), 8)])
    images = LMDBImages(tiny_lmdb)
    np.testing.assert_array_equal(batches, np.stack([expected_pixels(images, 8, i) for i in range(TINY_COUNT)]))


def test_each_mpi_rank_takes_its_own_share_of_every_global_batch(tiny_lmdb):
    dataset = ImageDataset(tiny_lmdb, 8)
    keys = list(range(16))
    whole = [b.numpy() for b in BatchLoader(dataset, 8, keys)]
    shares = [[b.numpy() for b in BatchLoader(dataset, 8, keys, rank=rank, world=2)] for rank in (0, 1)]
    for index, batch in enumerate(whole):
        assert shares[0][index].shape == (4, 3, 8, 8)
        np.testing.assert_array_equal(np.concatenate([shares[0][index], shares[1][index]]), batch)


@pytest.mark.parametrize("batch_size", [0, TINY_COUNT + 1])
def test_batch_size_must_fit_the_images(tiny_lmdb, batch_size):
    with pytest.raises(ConfigError, match=f"batch size {batch_size} does not fit the {TINY_COUNT} images"):
        BatchLoader(ImageDataset(tiny_lmdb, 8), batch_size)


def test_a_negative_worker_count_is_a_config_error(tiny_lmdb):
    with pytest.raises(ConfigError, match="loader workers must be 0 or more, got -1"):
        BatchLoader(ImageDataset(tiny_lmdb, 8), 4, num_workers=-1)


def test_loader_threads_decode_a_whole_lazy_step_ahead(tiny_lmdb):
    """Two batches per thread, or as many as fit in AHEAD_BYTES: WGAN's 6 batches (64 at 64 px, as
    many bytes as 16 at 128 px)."""
    dataset = ImageDataset(tiny_lmdb, 8)
    assert BatchLoader(dataset, 4, num_workers=2).lookahead() == data.AHEAD_BYTES // (4 * 3 * 8 * 8 * 4)
    dataset.size = 128
    assert BatchLoader(dataset, 16, num_workers=2).lookahead() >= 6
    assert BatchLoader(dataset, 16, num_workers=2, rank=1, world=2).lookahead() >= 12, "a rank holds half a batch"
    dataset.size = 4096
    assert BatchLoader(dataset, 16, num_workers=3).lookahead() == 6, "at least two per thread"


def test_an_abandoned_loader_stops_its_threads(tiny_lmdb):
    def loader_threads():
        return [t for t in threading.enumerate() if t.name.startswith("jgan-loader")]
    before = len(loader_threads())
    batches = iter(BatchLoader(ImageDataset(tiny_lmdb, 8), 2, num_workers=2))
    next(batches)
    assert len(loader_threads()) > before
    batches.close()
    assert len(loader_threads()) == before


def in_forked_child(function):
    """The (picklable) result of function() run in a forked child process."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=lambda: queue.put(function()))
    child.start()
    result = queue.get(timeout=60)
    child.join()
    return result


def test_a_forked_child_opens_its_own_lmdb_environment(tiny_lmdb):
    images = LMDBImages(tiny_lmdb)
    inherited = images.env

    def read_in_child():
        again = LMDBImages(tiny_lmdb)
        return again.env is not inherited, again.image(8, 0).shape
    assert in_forked_child(read_in_child) == (True, (8, 8, 3))
    assert LMDBImages(tiny_lmdb).env is inherited and images.image(8, 0).shape == (8, 8, 3), \
        "the parent keeps its own"


# ----- undecodable records -----------------------------------------------------------------------
def garbled_copy(tiny_lmdb, folder, keys):
    """A copy of the tiny LMDB whose records `keys` hold bytes that are not an image."""
    import shutil
    shutil.copytree(tiny_lmdb, folder)
    with lmdb.open(str(folder)) as env, env.begin(write=True) as txn:
        for key in keys:
            txn.put(key.encode(), b"\x89PNG garbage, not an image")
    return folder


def test_an_undecodable_record_is_replaced_by_the_next_image_and_logged_once(tiny_lmdb, tmp_path, capsys):
    dataset = ImageDataset(garbled_copy(tiny_lmdb, tmp_path / "bad", ["16-00005"]), 16)
    batch = dataset.batch([4, 5, 5, 7])
    assert batch.shape == (4, 3, 16, 16)
    np.testing.assert_array_equal(batch[1], dataset[6])
    np.testing.assert_array_equal(batch[2], dataset[6])
    assert capsys.readouterr().err.count("record 16-00005 of") == 1
    assert dataset.bad.keys == ["16-00005"] and not dataset.bad.too_many()


def test_more_than_one_percent_of_bad_records_is_too_many(tiny_lmdb, tmp_path):
    dataset = ImageDataset(garbled_copy(tiny_lmdb, tmp_path / "bad", ["8-00001", "8-00002"]), 8)
    dataset.batch(range(TINY_COUNT))
    assert dataset.bad.too_many()
    assert "2 records of the 24 images" in dataset.bad.sentence() and "8-00001, 8-00002" in dataset.bad.sentence()


def test_an_image_of_the_wrong_size_is_a_bad_record(tiny_lmdb, tmp_path):
    folder = garbled_copy(tiny_lmdb, tmp_path / "bad", [])
    with lmdb.open(str(folder)) as env, env.begin(write=True) as txn:
        txn.put(b"8-00003", txn.get(b"16-00003"))
    dataset = ImageDataset(folder, 8)
    dataset[3]
    assert dataset.bad.keys == ["8-00003"]
