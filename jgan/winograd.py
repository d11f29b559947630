"""Float32 3x3 convolutions by Winograd's algorithm on the CPU (`train.winograd`, on by default).

Winograd's F(4x4, 3x3) computes each 4x4 tile of a stride-1 3x3 convolution's output from a 6x6
tile of its input with 36 products per pair of channels instead of 144; oneDNN has it, forward and
both gradients, for float32 on CPUs with AVX-512 (its avx512_core kernels). The sums are the
convolution's, added in another order through the tile transforms, so results differ from the
direct algorithm's by rounding only. `enable(True)` routes Jittor's convolutions that `fits`
(see jgan.conv_route) through jgan.onednn_conv with that algorithm; oneDNN falls back to its
direct primitives for a convolution its Winograd ones do not take.
"""
import os
import sys

import jittor as jt

from jgan import onednn_conv
from jgan.conv_route import Route, pair

AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
CHANNEL_BLOCK = 16   # oneDNN's Winograd primitives compute channels in blocks of 16
SMALLEST_OUTPUT = 8  # px: below it an image is one tile, and the direct primitives are as fast
TILE = 4             # px: the side of an output tile
LEAST_WORK = 4096    # tiles x input channels below which the transforms cost more than they save
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")   # what oneDNN may use, if the user limited it


def isa_allowed():
    """Whether oneDNN may use AVX-512 (the user may limit it to less in its environment variables)."""
    limit = next((os.environ[name] for name in ISA_LIMITS if os.environ.get(name)), "ALL").upper()
    return limit == "ALL" or limit.startswith(("AVX512_CORE", "AVX10"))


def supported():
    """Whether oneDNN can run Winograd convolutions here: on the CPU, oneDNN active, AVX-512 present
    and allowed."""
    from jgan import runtime
    return (not jt.flags.use_cuda and runtime.onednn_active() and AVX512_CORE <= onednn_conv.cpu_flags()
            and isa_allowed())


def fits(x_shape, w_shape, stride, padding):
    """Whether a convolution of an (N, C, H, W) input by (O, C, KH, KW) weights is one that oneDNN's
    Winograd primitives take and run faster than its direct ones."""
    images, channels, height, width = x_shape
    outputs, _, kh, kw = w_shape
    ph, pw = pair(padding)
    out_h, out_w = height + 2 * ph - 2, width + 2 * pw - 2
    tiles = images * -(-out_h // TILE) * -(-out_w // TILE)
    return ((kh, kw) == (3, 3) and pair(stride) == (1, 1) and max(ph, pw) <= 1
            and channels % CHANNEL_BLOCK == 0 and outputs % CHANNEL_BLOCK == 0
            and min(out_h, out_w) >= SMALLEST_OUTPUT and tiles * channels >= LEAST_WORK)


def _takes(dtype, x_shape, weight, stride, padding):
    """Whether a convolution of an (N, C, H, W) input of x_shape goes through Winograd's algorithm: on the CPU,
    float32, and it `fits`."""
    return (not jt.flags.use_cuda and dtype == "float32" and weight.dtype == "float32"
            and fits(x_shape, weight.shape, stride, padding))


def routed(kind, x, weight, stride, padding, output_padding):
    """Whether a convolution goes through Winograd's algorithm (asked only while enabled)."""
    return kind == "conv2d" and _takes(x.dtype, x.shape, weight, stride, padding)


def takes_channels_last(x, weight, stride, padding):
    """Whether a convolution of a channels-last (N, H, W, C) input (jgan.networks.dcgan.run_layers)
    goes through Winograd's algorithm: while enabled, where its (N, C, H, W) form would."""
    n, h, w, c = x.shape
    return enabled() and _takes(x.dtype, (n, c, h, w), weight, stride, padding)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    return onednn_conv.conv2d(x, weight, bias, stride, padding, bfloat16=False, winograd=True)


ROUTE = Route(sys.modules[__name__])


def enable(on):
    """Route Jittor's convolutions that fit through Winograd's algorithm (True) or give them back (False)."""
    ROUTE.switch(on)


def enabled():
    return ROUTE.installed
