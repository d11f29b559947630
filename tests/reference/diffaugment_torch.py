"""PyTorch reference of DiffAugment's transforms, written from the paper's description.

Same explicit parameters as jgan.augment (one per image, integer tensors for shifts and centres),
computed another way: colour applies its three steps one after another; translation pads every
image by the largest shift and crops a window per image; cutout zeroes a slice of a mask per
image. Loops over images are fine in a reference.
"""
import torch
from torch.nn import functional as F


def column(values):
    return values.reshape(-1, 1, 1, 1)


def adjust_brightness(x, brightness):
    return x + column(brightness)


def adjust_saturation(x, saturation):
    gray = x.mean(dim=1, keepdim=True)
    return (x - gray) * column(saturation) + gray


def adjust_contrast(x, contrast):
    average = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - average) * column(contrast) + average


def color(x, brightness, saturation, contrast):
    return adjust_contrast(adjust_saturation(adjust_brightness(x, brightness), saturation), contrast)


def translate(x, shift_x, shift_y):
    """Content moves right by shift_x and down by shift_y pixels; zeros come in."""
    _, _, height, width = x.shape
    pad = int(max(shift_x.abs().max(), shift_y.abs().max(), 0))
    padded = F.pad(x, (pad, pad, pad, pad))
    windows = []
    for n in range(x.shape[0]):
        top, left = pad - int(shift_y[n]), pad - int(shift_x[n])
        windows.append(padded[n, :, top:top + height, left:left + width])
    return torch.stack(windows)


def cutout(x, centre_x, centre_y, size):
    _, _, height, width = x.shape
    mask = torch.ones(x.shape[0], 1, height, width, dtype=x.dtype)
    for n in range(x.shape[0]):
        top, left = int(centre_y[n]) - size // 2, int(centre_x[n]) - size // 2
        mask[n, :, max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = 0
    return x * mask
