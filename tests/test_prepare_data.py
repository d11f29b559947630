"""prepare_data.py and jgan.prepare.prepare_lmdb: folder of images -> multi-resolution LMDB."""
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest
from PIL import Image

from conftest import shape_image
from jgan import __version__, prepare
from jgan.data import LMDBImages
from jgan.prepare import load_rgb, prepare_lmdb, resize_and_crop, to_rgb
from jgan.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parent.parent
WHITE = (255, 255, 255)


def flat(colour, size=(32, 32), mode="RGB"):
    return Image.new(mode, size, colour)


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pixel(image, xy):
    return tuple(int(v) for v in np.asarray(image)[xy[1], xy[0]])


def half_transparent(mode, colour):
    """Left half fully transparent (colour underneath is black), right half opaque `colour`."""
    image = Image.new(mode, (4, 2), 0)
    opaque = Image.new(mode, (2, 2), colour)
    image.paste(opaque, (2, 0))
    return image


def read_all(path):
    with lmdb.open(str(path), readonly=True, lock=False) as env, env.begin() as txn:
        return dict(txn.cursor())


def leftovers(parent, keep):
    return sorted(p.name for p in Path(parent).iterdir() if p.name not in keep)


# ----- one image ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode, colour, opaque", [
    ("RGBA", (200, 10, 10, 255), (200, 10, 10)),
    ("LA", (50, 255), (50, 50, 50)),
    ("PA", (1, 255), None),
])
def test_alpha_is_composited_on_white(mode, colour, opaque):
    image = half_transparent(mode, colour)
    if mode == "PA":
        image.putpalette([0, 0, 0, 30, 90, 150] + [0] * 762)
        opaque = (30, 90, 150)
    rgb = to_rgb(image)
    assert rgb.mode == "RGB"
    assert pixel(rgb, (0, 0)) == WHITE, "a fully transparent pixel must become white"
    assert pixel(rgb, (3, 1)) == opaque, "an opaque pixel must keep its colour"


def test_half_transparent_black_becomes_mid_grey():
    image = Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    red, green, blue = pixel(to_rgb(image), (0, 0))
    assert red == green == blue and abs(red - 255 * (1 - 128 / 255)) <= 1, (red, green, blue)


def test_palette_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0, 250, 20, 20] + [0] * 762)
    image.paste(1, (2, 0, 4, 2))
    image.save(tmp_path / "p.png", transparency=0)
    rgb = load_rgb(tmp_path / "p.png")
    assert pixel(rgb, (0, 0)) == WHITE and pixel(rgb, (3, 0)) == (250, 20, 20)


def test_grey_becomes_three_equal_channels(tmp_path):
    flat(77, mode="L").save(tmp_path / "grey.png")
    assert pixel(load_rgb(tmp_path / "grey.png"), (5, 5)) == (77, 77, 77)


@pytest.mark.parametrize("name, dtype", [("grey16.png", np.uint16), ("grey32.tif", np.int32)])
def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path, name, dtype):
    values = np.array([[0, 300, 128 * 257, 65535]], dtype=dtype)
    Image.fromarray(values).save(tmp_path / name)
    with Image.open(tmp_path / name) as check:
        assert check.mode in ("I;16", "I"), check.mode
    rgb = np.asarray(load_rgb(tmp_path / name))
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_gif_gives_its_first_frame(tmp_path):
    frames = [flat((255, 0, 0)), flat((0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert pixel(load_rgb(tmp_path / "anim.gif"), (3, 3)) == (255, 0, 0)


@pytest.mark.parametrize("transpose", [False, True])
def test_resize_and_crop_keeps_the_centre_of_a_non_square_image(transpose):
    stripes = np.zeros((16, 48, 3), np.uint8)
    stripes[:, :16], stripes[:, 16:32], stripes[:, 32:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    if transpose:
        stripes = stripes.transpose(1, 0, 2).copy()
    crop = np.asarray(resize_and_crop(Image.fromarray(stripes), 8)).astype(int)
    if transpose:
        crop = crop.transpose(1, 0, 2)
    assert crop.shape == (8, 8, 3)
    assert (crop[..., 1] >= 240).all(), "the crop must be the green middle stripe"
    assert abs(crop[:, 0, 0].mean() - crop[:, -1, 2].mean()) <= 1, "the crop must be centred"


# ----- the LMDB -----------------------------------------------------------------------------

MIXED = {
    "a_rgba.png": flat((10, 20, 30, 0), mode="RGBA"),
    "b_grey.png": flat(60, mode="L"),
    "c_la.png": flat((0, 0), mode="LA"),
    "nested/d_grey16.png": Image.fromarray(np.full((32, 32), 100 * 257, np.uint16)),
    "nested/deeper/e_wide.jpg": flat((40, 200, 40), size=(64, 32)),
    "nested/f_tall.webp": flat((200, 40, 40), size=(32, 48)),
    "g_anim.gif": flat((0, 0, 255)),
    "h_small.bmp": flat((90, 90, 10), size=(16, 16)),
    "i_scan.tiff": flat((10, 90, 90)),
    "broken/truncated.png": png_bytes(shape_image(0))[:120],
    "fake.jpg": b"this is not a picture\n",
    "notes.txt": b"some notes\n",
}
# the readable images in the order of their sorted relative paths, which is their index order
MIXED_COLOURS = [("a_rgba.png", WHITE), ("b_grey.png", (60, 60, 60)), ("c_la.png", WHITE),
                 ("g_anim.gif", (0, 0, 255)), ("h_small.bmp", (90, 90, 10)), ("i_scan.tiff", (10, 90, 90)),
                 ("nested/d_grey16.png", (100, 100, 100)), ("nested/deeper/e_wide.jpg", (40, 200, 40)),
                 ("nested/f_tall.webp", (200, 40, 40))]


def test_prepare_mixed_folder(image_folder, tmp_path):
    folder = image_folder(MIXED)
    summary = prepare_lmdb(folder, tmp_path / "out", sizes=(8, 16, 32, 64), progress=False)
    assert summary.count == 9
    assert summary.sizes == (8, 16, 32) and summary.dropped_sizes == (64,)
    assert summary.upscaled == 1, "only the 16 px bmp is smaller than 32 px"
    assert [path for path, _ in summary.skipped] == ["broken/truncated.png", "fake.jpg"]
    assert summary.ignored == ["notes.txt"]
    report = summary.report()
    assert "skipped 2 unreadable images" in report and "broken/truncated.png" in report
    assert "dropped sizes 64" in report and "1 images were upscaled" in report

    images = LMDBImages(tmp_path / "out")
    assert images.length == 9 and images.sizes == [8, 16, 32]
    for index, (name, colour) in enumerate(MIXED_COLOURS):
        stored = images.image(8, index).reshape(-1, 3).astype(int)
        error = int(np.abs(stored - colour).max())  # jpg and webp are lossy
        assert error <= 4, f"image {index} ({name}): expected {colour}, got {tuple(stored[0])}"


def test_stored_layout_is_rosinalitys(image_folder, tmp_path):
    folder = image_folder({f"{i}.png": shape_image(i) for i in range(3)})
    prepare_lmdb(folder, tmp_path / "out", sizes=(8, 16), progress=False)
    records = read_all(tmp_path / "out")
    assert set(records) == {b"length", b"meta", b"8-00000", b"8-00001", b"8-00002",
                            b"16-00000", b"16-00001", b"16-00002"}
    assert records[b"length"] == b"3"
    meta = json.loads(records[b"meta"])
    assert meta["sizes"] == [8, 16] and meta["count"] == 3 and meta["encoding"] == "png"
    assert meta["source"] == str(folder.resolve()) and meta["jgan_version"] == __version__
    assert Image.open(io.BytesIO(records[b"16-00002"])).size == (16, 16)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask, "readable like any new folder"


def test_png_round_trip_is_lossless(image_folder, tmp_path):
    source = image_folder({"shape.png": shape_image(4)}) / "shape.png"
    prepare_lmdb(source.parent, tmp_path / "out", sizes=(8, 32), progress=False)
    images = LMDBImages(tmp_path / "out")
    for size in (8, 32):
        expected = np.asarray(resize_and_crop(load_rgb(source), size))
        np.testing.assert_array_equal(images.image(size, 0), expected, err_msg=f"size {size}")


def test_jpeg_encoding(image_folder, tmp_path):
    folder = image_folder({"shape.png": shape_image(4)})
    prepare_lmdb(folder, tmp_path / "out", sizes=(32,), image_format="jpeg", quality=90, progress=False)
    records = read_all(tmp_path / "out")
    assert records[b"32-00000"][:2] == b"\xff\xd8", "JPEG bytes start with the SOI marker"
    assert json.loads(records[b"meta"])["encoding"] == "jpeg"
    expected = np.asarray(resize_and_crop(load_rgb(folder / "shape.png"), 32)).astype(int)
    difference = np.abs(LMDBImages(tmp_path / "out").image(32, 0).astype(int) - expected).mean()
    assert difference < 8, f"JPEG differs from the source by {difference:.2f} on average"


def test_same_folder_gives_the_same_lmdb_with_any_number_of_workers(image_folder, tmp_path):
    folder = image_folder({f"{i % 3}/{i}.png": shape_image(i) for i in range(10)})
    prepare_lmdb(folder, tmp_path / "one", sizes=(8, 16), n_worker=1, progress=False)
    prepare_lmdb(folder, tmp_path / "two", sizes=(8, 16), n_worker=2, progress=False)
    assert read_all(tmp_path / "one") == read_all(tmp_path / "two")


def test_map_size_grows_when_the_lmdb_is_full(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "INITIAL_MAP_SIZE", 64 * 1024)
    noise = np.random.default_rng(0).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    folder = image_folder({f"{i:02d}.png": Image.fromarray(x) for i, x in enumerate(noise)})
    summary = prepare_lmdb(folder, tmp_path / "out", sizes=(32, 64), progress=False)
    assert summary.count == 12 and summary.bytes_on_disk > 64 * 1024
    np.testing.assert_array_equal(LMDBImages(tmp_path / "out").image(64, 11), noise[11])


def interrupt_at(monkeypatch, call):
    """Makes the `call`-th image load raise KeyboardInterrupt (as Ctrl-C would)."""
    calls = []
    real = prepare.load_rgb

    def load(path):
        calls.append(path)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(path)
    monkeypatch.setattr(prepare, "load_rgb", load)


def test_interrupted_run_leaves_nothing_at_out(image_folder, tmp_path, monkeypatch):
    folder = image_folder({f"{i}.png": shape_image(i) for i in range(prepare.WRITE_EVERY + 8)})
    interrupt_at(monkeypatch, prepare.WRITE_EVERY + 4)  # after the first write transaction
    with pytest.raises(KeyboardInterrupt):
        prepare_lmdb(folder, tmp_path / "out", sizes=(8,), progress=False)
    assert leftovers(tmp_path, keep={"images"}) == [], "no LMDB and no temporary folder may remain"


def test_failed_replacement_keeps_the_old_lmdb(image_folder, tmp_path, monkeypatch):
    folder = image_folder({f"{i}.png": shape_image(i) for i in range(4)})
    prepare_lmdb(folder, tmp_path / "out", sizes=(8,), progress=False)
    before = read_all(tmp_path / "out")
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        prepare_lmdb(folder, tmp_path / "out", sizes=(8, 16), force=True, progress=False)
    assert read_all(tmp_path / "out") == before
    assert leftovers(tmp_path, keep={"images", "out"}) == []


def test_existing_out_is_replaced_only_with_force(image_folder, tmp_path):
    folder = image_folder({f"{i}.png": shape_image(i) for i in range(2)})
    prepare_lmdb(folder, tmp_path / "out", sizes=(8,), progress=False)
    with pytest.raises(ConfigError, match="--force"):
        prepare_lmdb(folder, tmp_path / "out", sizes=(8, 16), progress=False)
    assert LMDBImages(tmp_path / "out").sizes == [8]
    prepare_lmdb(folder, tmp_path / "out", sizes=(8, 16), force=True, progress=False)
    assert LMDBImages(tmp_path / "out").sizes == [8, 16]
    assert leftovers(tmp_path, keep={"images", "out"}) == []


def test_force_never_replaces_a_folder_that_is_not_an_lmdb(image_folder, tmp_path):
    folder = image_folder({"0.png": shape_image(0)})
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(ConfigError, match="not an LMDB"):
        prepare_lmdb(folder, precious, sizes=(8,), force=True, progress=False)
    assert (precious / "thesis.txt").read_text() == "do not delete"


def test_user_errors(image_folder, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_lmdb(tmp_path / "missing", tmp_path / "out", progress=False)
    empty = image_folder({"readme.txt": b"no images here"})
    with pytest.raises(DataError, match="no usable images in"):
        prepare_lmdb(empty, tmp_path / "out", progress=False)
    unreadable = image_folder({"bad.png": b"not a png"}, name="unreadable")
    with pytest.raises(DataError, match="no usable images in"):
        prepare_lmdb(unreadable, tmp_path / "out", progress=False)
    small = image_folder({"0.png": flat(0, size=(16, 16), mode="L")}, name="small")
    with pytest.raises(ConfigError, match="larger than the largest image"):
        prepare_lmdb(small, tmp_path / "out", sizes=(32, 64), progress=False)
    with pytest.raises(ConfigError, match="png or jpeg"):
        prepare_lmdb(small, tmp_path / "out", sizes=(8,), image_format="gif", progress=False)
    assert leftovers(tmp_path, keep={"images", "unreadable", "small"}) == []


# ----- the command line ---------------------------------------------------------------------


def prepare_data(*args, cwd):
    return subprocess.run([sys.executable, str(REPO / "prepare_data.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_cli_writes_the_lmdb_and_prints_a_summary(image_folder, tmp_path):
    folder = image_folder({f"{i}.png": shape_image(i) for i in range(3)})
    result = prepare_data("--out", "out", "--sizes", "8", "16", "--no-progress", folder, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 images at sizes 8, 16 to out" in result.stdout
    assert LMDBImages(tmp_path / "out").length == 3


PREPARE_WITHOUT_JITTOR = """
import sys
import prepare_data
prepare_data.main(prepare_data.build_parser().parse_args(["--out", "out", "--sizes", "8", "--no-progress", "images"]))
print("jittor imported:", "jittor" in sys.modules)
"""


def test_cli_never_imports_jittor(image_folder, tmp_path):
    image_folder({f"{i}.png": shape_image(i) for i in range(2)})
    result = subprocess.run([sys.executable, "-c", PREPARE_WITHOUT_JITTOR], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "jittor imported: False", result.stdout
    assert LMDBImages(tmp_path / "out").length == 2


def test_cli_empty_folder_is_one_sentence_and_exit_2(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    result = prepare_data("--out", "X", "empty_dir/", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("prepare_data.py: error: no usable images in empty_dir"), result.stderr
    assert not (tmp_path / "X").exists()


def test_cli_ctrl_c_removes_the_temporary_lmdb_and_exits_130(image_folder, tmp_path):
    """Ctrl-C signals the whole process group; no hang, no leftovers."""
    folder = image_folder({f"{i:04d}.png": shape_image(i % 24) for i in range(1000)})
    command = [sys.executable, str(REPO / "prepare_data.py"), "--out", "out", "--sizes", "8", "16", "32",
               "--no-progress", str(folder)]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        while not written(tmp_path.glob(".out.*.partial/data.mdb")) and process.poll() is None:
            time.sleep(0.02)  # until images are being written, the worker pool running
        os.killpg(process.pid, signal.SIGINT)
        stderr = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "prepare_data.py: interrupted; out is unchanged", stderr
    assert "Traceback" not in stderr
    assert leftovers(tmp_path, keep={"images"}) == []
    time.sleep(0.5)
    assert live_processes(process.pid) == [], "no worker process may be left behind"


def written(data_files, at_least=32 * 1024):
    return any(path.stat().st_size >= at_least for path in data_files)


def live_processes(group):
    """The pids of the running (not zombie) processes of a process group, from /proc."""
    pids = []
    for status_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = status_file.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:
            continue
        if int(pgrp) == group and state != "Z":
            pids.append(int(status_file.parent.name))
    return pids


VERIFY_WITHOUT_JITTOR = """
import sys
import prepare_data
try:
    prepare_data.main(prepare_data.build_parser().parse_args(["--verify", "bad"]))
except Exception as error:
    print(type(error).__name__, error)
print("jittor imported:", "jittor" in sys.modules)
"""


def test_verify_lists_every_bad_record_and_never_imports_jittor(tiny_lmdb, tmp_path):
    import shutil

    import lmdb
    shutil.copytree(tiny_lmdb, tmp_path / "bad")
    with lmdb.open(str(tmp_path / "bad")) as env, env.begin(write=True) as txn:
        txn.put(b"16-00004", b"not an image")
        txn.delete(b"32-00007")
    result = prepare_data("--verify", "bad", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["16-00004", "32-00007"]
    assert "2 of the 72 records of bad are bad (listed above)" in result.stderr
    result = subprocess.run([sys.executable, "-c", VERIFY_WITHOUT_JITTOR], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.splitlines()[-1] == "jittor imported: False", result.stdout + result.stderr


def test_verify_of_a_sound_lmdb_says_so(tiny_lmdb, tmp_path):
    result = prepare_data("--verify", tiny_lmdb, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{tiny_lmdb}: all 72 records decode"
