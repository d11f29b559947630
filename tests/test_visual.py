"""Grids, GIFs and the loss plot."""
import json

import numpy as np
from PIL import Image

from jgan import visual


def test_to_uint8_maps_minus_one_to_zero_and_one_to_255():
    images = np.array([-1.0, 0.0, 1.0, 2.0], dtype=np.float32).reshape(1, 1, 2, 2).repeat(3, axis=1)
    out = visual.to_uint8(images)
    assert out.shape == (1, 2, 2, 3)
    assert out[0, :, :, 0].tolist() == [[0, 128], [255, 255]]


def test_grid_places_images_row_by_row_with_padding():
    images = np.stack([np.full((4, 4, 3), value, np.uint8) for value in (10, 20, 30)])
    canvas = visual.grid(images, nrow=2, padding=1, fill=255)
    assert canvas.shape == (1 + 2 * 5, 1 + 2 * 5, 3)
    assert canvas[1, 1, 0] == 10 and canvas[1, 6, 0] == 20 and canvas[6, 1, 0] == 30
    assert canvas[6, 6, 0] == 255 and canvas[0, 0, 0] == 255


def test_gif_has_every_frame(tmp_path):
    frames = [np.full((8, 8, 3), value, np.uint8) for value in (0, 100, 200)]
    path = visual.save_gif(frames, tmp_path / "walk.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 3


def test_loss_plot_from_a_log_with_a_torn_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [json.dumps({"step": s, "images": 8 * s, "d_loss": 1.0 / s, "g_loss": float(s)}) for s in (1, 2, 3)]
    log.write_text("\n".join(lines) + '\n{"step": 4, "d_lo')
    assert [r["step"] for r in visual.read_log(log)] == [1, 2, 3]
    path = visual.plot_log(log, tmp_path / "loss.png")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert image.size == (800, 480)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert tuple(visual.PLOT_COLOURS[0]) in colours and tuple(visual.PLOT_COLOURS[1]) in colours
