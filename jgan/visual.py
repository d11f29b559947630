"""Figures: image grids, GIFs and the loss plot, all drawn with Pillow and written atomically."""
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PLOT_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                (140, 86, 75), (227, 119, 194), (127, 127, 127)]
BOOKKEEPING_KEYS = ("images", "size", "alpha", "n_real", "n_fake", "swd_images")


def to_uint8(images):
    """NCHW floats in [-1, 1] (jt.Var or array) -> NHWC uint8."""
    array = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    array = np.clip((array + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return array.transpose(0, 2, 3, 1)


def grid(images, nrow=8, padding=2, fill=255):
    """NHWC uint8 images -> one HWC uint8 grid, `nrow` images per row."""
    count, height, width, channels = images.shape
    ncol = min(nrow, count)
    rows = math.ceil(count / ncol)
    canvas = np.full((rows * (height + padding) + padding, ncol * (width + padding) + padding, channels),
                     fill, dtype=np.uint8)
    for index, image in enumerate(images):
        top = padding + (index // ncol) * (height + padding)
        left = padding + (index % ncol) * (width + padding)
        canvas[top:top + height, left:left + width] = image
    return canvas


def _save_atomically(image, path, **options):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        image.save(tmp, **options)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_image(array, path):
    """An HWC uint8 array as a PNG (or any Pillow format named by the suffix)."""
    return _save_atomically(Image.fromarray(array), path)


def save_grid(images, path, nrow=8):
    """NCHW images in [-1, 1] as one grid image."""
    return save_image(grid(to_uint8(images), nrow), path)


def save_gif(frames, path, seconds_per_frame=0.1):
    """HWC uint8 frames as a looping GIF."""
    pictures = [Image.fromarray(frame) for frame in frames]
    return _save_atomically(pictures[0], path, save_all=True, append_images=pictures[1:],
                            duration=int(seconds_per_frame * 1000), loop=0)


def read_log(path):
    """The JSON lines of a run's log, skipping a torn last line."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_series(series, path, title="", size=(800, 480)):
    """Line plot of {name: [(x, y), ...]} drawn with Pillow, with a legend and axis ranges."""
    width, height = size
    left, right, top, bottom = 70, 20, 30, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    points = [p for values in series.values() for p in values if math.isfinite(p[1])]
    if not points:
        draw.text((left, top), "no data yet", fill="black")
        return _save_atomically(image, path)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def place(x, y):
        return (left + (x - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for fraction in (0, 0.5, 1):
        y = y0 + fraction * (y1 - y0)
        draw.text((5, place(x0, y)[1] - 6), f"{y:.3g}", fill="black")
        x = x0 + fraction * (x1 - x0)
        draw.text((place(x, y0)[0] - 10, height - bottom + 8), f"{x:.0f}", fill="black")
    draw.text((left, 8), title, fill="black")
    for index, (name, values) in enumerate(series.items()):
        colour = PLOT_COLOURS[index % len(PLOT_COLOURS)]
        line = [place(x, y) for x, y in values if math.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        draw.text((width - right - 150, top + 8 + 14 * index), name, fill=colour)
    return _save_atomically(image, path)


def is_curve(key, value):
    """Whether a log entry is a value to plot, not a count, a size or a duration."""
    return isinstance(value, (int, float)) and not key.endswith("seconds") and key not in BOOKKEEPING_KEYS


def plot_log(log_path, png_path, x_key="step"):
    """Plot every curve of a run's JSON-lines log against `x_key` ("no data yet" before the log exists)."""
    records = read_log(log_path) if Path(log_path).exists() else []
    series = {}
    for record in records:
        for key, value in record.items():
            if key != x_key and is_curve(key, value):
                series.setdefault(key, []).append((record[x_key], float(value)))
    return plot_series(series, png_path, title=f"{Path(log_path).stem} by {x_key}")
