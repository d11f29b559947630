"""Convolutions as matrix products, for Jittor on CUDA without cuDNN.

Without cuDNN, Jittor runs `nn.conv2d` and `nn.conv_transpose2d` as one fused kernel over the
7-d product batch x out channels x in channels x pixels x taps, which is never a tensor: Jittor
picks 32-bit indices from the tensors a fused kernel reads and writes (src/fused_op.cc), so that
loop overflows past 2^31 products (a DCGAN generator at batch 128), and it runs no faster than
the naive loop it is. Here a convolution is an im2col gather (a tensor of its own, indexed in 64
bits when it needs them) and one cuBLAS matrix product; a transposed convolution is the matrix
product followed by the col2im scatter-add. The gradients are Jittor's of those ops.

`install()` routes Jittor's convolutions (functions and modules, groups 1, no dilation; see
jgan.conv_route) through these while `jt.flags.use_cuda` is set; jgan.runtime calls it when Jittor has CUDA but no cuDNN.
On the CPU nothing changes: oneDNN runs the convolutions there.
"""
import sys

import jittor as jt
from jittor import nn

from jgan.conv_route import Route, pair


def matmul(a, b):
    """a @ b of two matrices: on CUDA cuBLAS's batched product, whose gradients are cuBLAS products
    too (Jittor's 2-d matmul is a fused loop that reaches cuBLAS only through its tuner);
    elsewhere Jittor's."""
    cublas = getattr(jt.compile_extern, "cublas_ops", None)
    if jt.flags.use_cuda and cublas is not None:
        return cublas.cublas_batched_matmul(a.reshape(1, *a.shape), b.reshape(1, *b.shape), 0, 0)[0]
    return nn.matmul(a, b)


def _with_bias(y, bias):
    return y if bias is None else y + bias.broadcast(y.shape, [0, 2, 3])


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """nn.conv2d(x, weight, bias, stride, padding) as im2col and one matrix product."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    n, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    columns = x.reindex([n, oh, ow, c, kh, kw], ["i0", "i3", f"i1*{sh}-{ph}+i4", f"i2*{sw}-{pw}+i5"])
    y = matmul(columns.reshape(n * oh * ow, c * kh * kw), weight.reshape(out_channels, c * kh * kw).transpose())
    return _with_bias(y.reshape(n, oh, ow, out_channels).transpose(0, 3, 1, 2), bias)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """nn.conv_transpose2d(x, weight, bias, stride, padding, output_padding) as one matrix product
    and the col2im scatter-add."""
    (sh, sw), (ph, pw), (qh, qw) = pair(stride), pair(padding), pair(output_padding)
    n, c, h, w = x.shape
    _, out_channels, kh, kw = weight.shape
    oh, ow = (h - 1) * sh - 2 * ph + kh + qh, (w - 1) * sw - 2 * pw + kw + qw
    columns = matmul(x.transpose(0, 2, 3, 1).reshape(n * h * w, c), weight.reshape(c, out_channels * kh * kw))
    y = columns.reshape(n, h, w, out_channels, kh, kw).reindex_reduce(
        "add", [n, out_channels, oh, ow], ["i0", "i3", f"i1*{sh}-{ph}+i4", f"i2*{sw}-{pw}+i5"])
    return _with_bias(y, bias)


def routed(kind, x, weight, stride, padding, output_padding):
    """Whether Jittor's convolutions go through this module now: on CUDA, all of them."""
    return bool(jt.flags.use_cuda)


ROUTE = Route(sys.modules[__name__])


def install():
    """Route Jittor's 2-d convolutions through these while on CUDA (idempotent)."""
    ROUTE.install()


def uninstall():
    """Give Jittor its own convolutions back."""
    ROUTE.uninstall()
