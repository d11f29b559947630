"""Shared fixtures: folders of generated images and a tiny LMDB made from them."""
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from jgan import runtime
from jgan.prepare import prepare_lmdb

runtime.init()  # before any test module imports Jittor, as the CLIs do; auto device
runtime.import_torch()  # before any test module imports it: PyTorch next to Jittor needs Jittor's binding fix

TINY_COUNT = 24
TINY_SIZES = (8, 16, 32)
COLOURS = [(220, 40, 40), (40, 150, 60), (40, 80, 200), (240, 180, 20), (140, 60, 170), (20, 20, 20)]
CANVASES = [(40, 40), (48, 40), (40, 56)]


def shape_image(index):
    """A coloured circle, square or triangle on white; colour, canvas and placement vary with index."""
    width, height = CANVASES[index % len(CANVASES)]
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    colour = COLOURS[index % len(COLOURS)]
    radius = 8 + index % 5 * 2
    cx, cy = width // 2 + (index % 4 - 2) * 3, height // 2 + (index % 3 - 1) * 4
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    kind = index // len(COLOURS) % 3
    if kind == 0:
        draw.ellipse(box, fill=colour)
    elif kind == 1:
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, cy - radius), (cx + radius, cy + radius), (cx - radius, cy + radius)], fill=colour)
    return image


@pytest.fixture(autouse=True)
def default_convolutions():
    """Every test starts with float32 convolutions on their direct algorithms: a Trainer built by an
    earlier test turns on Winograd's (train.winograd), which adds in another order."""
    runtime.set_precision("fp32")
    yield


def write_folder(folder, files):
    """Writes {relative path: PIL image or bytes} under `folder` (images saved by their extension)."""
    folder = Path(folder)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path)
    return folder


@pytest.fixture
def image_folder(tmp_path):
    """make(files, name="images") writes {relative path: PIL image or bytes} and returns the folder."""
    def make(files, name="images"):
        return write_folder(tmp_path / name, files)
    return make


@pytest.fixture(scope="session")
def tiny_lmdb(tmp_path_factory):
    """Path of an LMDB of 24 shapes-on-white images at sizes 8, 16 and 32 (read-only: do not modify)."""
    root = tmp_path_factory.mktemp("tiny")
    folder = write_folder(root / "images", {f"shape_{i:02d}.png": shape_image(i) for i in range(TINY_COUNT)})
    prepare_lmdb(folder, root / "lmdb", sizes=TINY_SIZES, progress=False)
    return root / "lmdb"
