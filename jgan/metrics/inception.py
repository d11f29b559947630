"""Inception-v3 as FID measures with it (Szegedy et al. 2016; Heusel et al. 2017): pool3 features.

The architecture is pytorch-fid's port of the TensorFlow FID graph: torchvision's Inception-v3 with
FIDInceptionA/C/E_1 (3x3 average pools that do not count padding) and FIDInceptionE_2 (a 3x3 max
pool in the pool branch of the last block). Parameter names are torchvision's, so the weight file
`pt_inception-2015-12-05-6726825d.pth` of pytorch-fid loads by name.
"""
import os
from pathlib import Path

import jittor as jt
import numpy as np
from jittor import nn

from jgan.errors import ConfigError
from jgan.runtime import import_torch

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"
WEIGHTS_ENV = "JGAN_INCEPTION"
INPUT_SIZE = 299
FEATURES = 2048
IGNORED_KEYS = ("fc.", "AuxLogits.")   # the classifier heads: FID stops at pool3


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def execute(self, x):
        return nn.relu(self.bn(self.conv(x)))


def average_pool_3x3(x):
    """3x3 average, stride 1, zero padding 1 left out of the count (TensorFlow's average pool).

    Jittor 1.3.11's avg_pool2d ignores count_include_pad=False, so the padded average is divided
    by the fraction of each window that lies inside the image."""
    inside = nn.avg_pool2d(jt.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype), 3, stride=1, padding=1)
    return nn.avg_pool2d(x, 3, stride=1, padding=1) / inside


def max_pool_3x3(x, stride):
    return nn.max_pool2d(x, 3, stride=stride, padding=1 if stride == 1 else 0)


class FIDInceptionA(nn.Module):
    """Mixed_5b/c/d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1 (35x35 grid)."""

    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def execute(self, x):
        return jt.concat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(average_pool_3x3(x)),
        ], dim=1)


class InceptionB(nn.Module):
    """Mixed_6a, grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | max pool/2."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def execute(self, x):
        return jt.concat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            max_pool_3x3(x, stride=2),
        ], dim=1)


class FIDInceptionC(nn.Module):
    """Mixed_6b/c/d/e, factorised 7x7: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avg pool-1x1 (17x17)."""

    def __init__(self, cin, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def execute(self, x):
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return jt.concat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(average_pool_3x3(x)),
        ], dim=1)


class InceptionD(nn.Module):
    """Mixed_7a, grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def execute(self, x):
        seven = x
        for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return jt.concat([self.branch3x3_2(self.branch3x3_1(x)), seven, max_pool_3x3(x, stride=2)], dim=1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (average pool, FIDInceptionE_1) and Mixed_7c (max pool, FIDInceptionE_2), 8x8 grid:
    1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1."""

    def __init__(self, cin, pool):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def execute(self, x):
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return jt.concat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(self.pool(x)),
        ], dim=1)


def FIDInceptionE_1(cin):
    return FIDInceptionE(cin, average_pool_3x3)


def FIDInceptionE_2(cin):
    return FIDInceptionE(cin, lambda x: max_pool_3x3(x, stride=1))


class FIDInceptionV3(nn.Module):
    """Images (N, 3, H, W) in [-1, 1] -> pool3 features (N, 2048); resized to 299 px bilinearly."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE_1(1280)
        self.Mixed_7c = FIDInceptionE_2(2048)

    def execute(self, images):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"FIDInceptionV3 takes (N, 3, H, W) images, got shape {tuple(images.shape)}")
        x = nn.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(max_pool_3x3(x, stride=2)))
        x = max_pool_3x3(x, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x.mean(dims=(2, 3))


# ----- the weight file ------------------------------------------------------------------------


def weights_path(path=None):
    """The weight file: `path`, else $JGAN_INCEPTION; a ConfigError says where to get it if missing."""
    chosen = path or os.environ.get(WEIGHTS_ENV)
    if chosen and Path(chosen).is_file():
        return Path(chosen)
    where = f"{chosen} does not exist" if chosen else f"no weight file was given (--inception or ${WEIGHTS_ENV})"
    raise ConfigError(f"FID and KID need pytorch-fid's Inception weights {WEIGHTS_NAME} and {where}; "
                      f"download it from {WEIGHTS_URL} (pytorch-fid's GitHub release) and pass its "
                      f"path with --inception or ${WEIGHTS_ENV}")


def read_weights(path):
    """{torchvision name: numpy array} of a .pth (read with PyTorch) or .npz weight file."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    try:
        torch = import_torch()
    except ImportError:
        raise ConfigError(f"reading {path.name} needs PyTorch (pip install torch), or pass the same "
                          f"weights as a .npz of numpy arrays under the same names") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(f"{path} is not a readable PyTorch weight file ({error}); download "
                          f"{WEIGHTS_NAME} again from {WEIGHTS_URL}") from None
    return {name: tensor.numpy() for name, tensor in state.items()}


def load_inception(path=None):
    """FIDInceptionV3 in eval mode with the weights of `path` (or $JGAN_INCEPTION)."""
    path = weights_path(path)
    state = {name: value for name, value in read_weights(path).items()
             if not name.startswith(IGNORED_KEYS) and not name.endswith("num_batches_tracked")}
    model = FIDInceptionV3()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [name for name in sorted(set(own) & set(state)) if tuple(own[name].shape) != state[name].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"{wrong[0]} has shape {state[wrong[0]].shape}, expected {tuple(own[wrong[0]].shape)}")
        raise ConfigError(f"{path} is not pytorch-fid's Inception weight file ({detail}); "
                          f"download {WEIGHTS_NAME} from {WEIGHTS_URL}")
    model.load_state_dict({name: value.astype(np.float32) for name, value in state.items()})
    model.eval()
    return model
