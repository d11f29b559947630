"""Convolutions with bfloat16 products and float32 sums on the CPU (`train.precision: bf16`).

On a CPU with bfloat16 instructions (Intel AMX or AVX-512 BF16), oneDNN multiplies bfloat16 values
several times faster than float32 ones and adds the products in float32. Here each convolution,
and each of its two gradients, is one oneDNN primitive that reads float32 tensors, rounds its two
operands to bfloat16 (8 bits of mantissa) and writes a float32 result: mixed precision as GPUs
train with it, for the convolutions only. Weights, optimiser moments, normalisation and every
other op stay float32. The three primitives (forward, backward data, backward weights) are each
other's adjoints, so gradients of any order (the WGAN-GP and R1 penalties) stay on them.

`enable(True)` routes Jittor's convolutions (see jgan.conv_route) through these on the CPU;
`check_supported()` says in one sentence why they cannot run here, if they cannot.
"""
import sys
from collections import namedtuple
from pathlib import Path

import jittor as jt

from jgan.conv_route import Route, pair

_HEADER = r"""
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
namespace jgan_bf16 {
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

inline engine& cpu() { static engine e(engine::kind::cpu, 0); return e; }

// x (N, C, H, W) convolved with w (O, C, KH, KW) into y (N, O, OH, OW)
struct Geometry { memory::dims x, w, y, stride, pad_l, pad_r; };

inline Geometry geometry(memory::dims x, memory::dims w, memory::dims y, int sh, int sw, int ph, int pw) {
    return {x, w, y, {sh, sw}, {ph, pw},
            {(y[2] - 1) * sh + w[2] - x[2] - ph, (y[3] - 1) * sw + w[3] - x[3] - pw}};
}

inline memory::desc plain(const memory::dims& d) { return {d, dt::f32, tag::abcd}; }
inline memory::desc any(const memory::dims& d, dt type) { return {d, type, tag::any}; }

// the float32 tensor at p as the primitive wants it (type and layout): itself, or a converted copy
inline memory operand(float* p, const memory::dims& d, const memory::desc& want, stream& s) {
    memory user(plain(d), cpu(), p);
    if (want == user.get_desc()) return user;
    memory copy(want, cpu());
    reorder(user, copy).execute(s, user, copy);
    return copy;
}

// run the primitive of pd on two float32 operands, writing its float32 result at out, plain
template <class Op>
inline void execute(const typename Op::primitive_desc& pd, int a_arg, float* a, const memory::dims& a_dims,
                    int b_arg, float* b, const memory::dims& b_dims, int out_arg, float* out,
                    const memory::dims& out_dims) {
    stream s(cpu());
    std::unordered_map<int, memory> args{
        {a_arg, operand(a, a_dims, pd.query_md(query::exec_arg_md, a_arg), s)},
        {b_arg, operand(b, b_dims, pd.query_md(query::exec_arg_md, b_arg), s)}};
    memory user(plain(out_dims), cpu(), out);
    memory::desc got = pd.query_md(query::exec_arg_md, out_arg);
    memory result = got == user.get_desc() ? user : memory(got, cpu());
    args.insert({out_arg, result});
    Op(pd).execute(s, args);
    if (result != user) reorder(result, user).execute(s, result, user);
    s.wait();
}

inline convolution_forward::primitive_desc forward_pd(const Geometry& g, dt result) {
    return {{prop_kind::forward_training, algorithm::convolution_direct, any(g.x, dt::bf16), any(g.w, dt::bf16),
             any(g.y, result), g.stride, g.pad_l, g.pad_r}, cpu()};
}

inline void forward(const Geometry& g, float* x, float* w, float* y) {
    execute<convolution_forward>(forward_pd(g, dt::f32), DNNL_ARG_SRC, x, g.x, DNNL_ARG_WEIGHTS, w, g.w,
                                 DNNL_ARG_DST, y, g.y);
}

// a gradient primitive of the convolution, with x, w and y of these types
template <class Op>
inline typename Op::primitive_desc gradient_pd(const Geometry& g, dt x, dt w, dt y) {
    return {{algorithm::convolution_direct, any(g.x, x), any(g.w, w), any(g.y, y), g.stride, g.pad_l, g.pad_r},
            cpu(), forward_pd(g, dt::bf16)};
}

inline void backward_data(const Geometry& g, float* dy, float* w, float* dx) {
    execute<convolution_backward_data>(gradient_pd<convolution_backward_data>(g, dt::f32, dt::bf16, dt::bf16),
                                       DNNL_ARG_DIFF_DST, dy, g.y, DNNL_ARG_WEIGHTS, w, g.w, DNNL_ARG_DIFF_SRC, dx, g.x);
}

inline void backward_weights(const Geometry& g, float* x, float* dy, float* dw) {
    execute<convolution_backward_weights>(gradient_pd<convolution_backward_weights>(g, dt::bf16, dt::f32, dt::bf16),
                                          DNNL_ARG_SRC, x, g.x, DNNL_ARG_DIFF_DST, dy, g.y, DNNL_ARG_DIFF_WEIGHTS, dw,
                                          g.w);
}
}
"""

# kind: which of (x, w, y) are the kernel's two operands and which is its result
_ROLES = {"forward": ("x", "w", "y"), "backward_data": ("y", "w", "x"), "backward_weights": ("x", "y", "w")}

Geometry = namedtuple("Geometry", "x w y stride padding")


def _source(kind, geometry):
    """The kernel's C++ body: shapes at run time, stride and padding in the source."""
    first, second, result = (("in0", "in1", "out0")[_ROLES[kind].index(name)] for name in "xwy")
    dims = ["{" + ", ".join(f"{tensor}_shape{i}" for i in range(4)) + "}" for tensor in (first, second, result)]
    (sh, sw), (ph, pw) = geometry.stride, geometry.padding
    return (f"jgan_bf16::{kind}(jgan_bf16::geometry({', '.join(dims)}, {sh}, {sw}, {ph}, {pw}), "
            f"in0_p, in1_p, out0_p);")


def _kernel(kind, geometry, a, b):
    shape = getattr(geometry, _ROLES[kind][2])
    return jt.code(shape, "float32", [a, b], cpu_header=_HEADER, cpu_src=_source(kind, geometry))


class _Convolution(jt.Function):
    """One of the three primitives of a convolution of x by w into y; each one's gradients are the
    other two. The gradients use the caller's a and b (not the taped copies execute receives), so
    that a second differentiation reaches them."""

    def __init__(self, kind, geometry, a, b):
        self.kind, self.geometry, self.a, self.b = kind, geometry, a, b

    def execute(self, a, b):
        return _kernel(self.kind, self.geometry, a, b)

    def grad(self, g):
        a, b, geometry = self.a, self.b, self.geometry
        if self.kind == "forward":           # y = conv(x = a, w = b)
            return _apply("backward_data", geometry, g, b), _apply("backward_weights", geometry, a, g)
        if self.kind == "backward_data":     # x = conv^T(y = a, w = b)
            return _apply("forward", geometry, g, b), _apply("backward_weights", geometry, g, a)
        return _apply("backward_data", geometry, b, g), _apply("forward", geometry, a, g)  # w from x = a, y = b


def _apply(kind, geometry, a, b):
    return _Convolution(kind, geometry, a, b)(a, b)


def _with_bias(y, bias):
    return y if bias is None else y + bias.broadcast(y.shape, [0, 2, 3])


def _geometry(x_shape, w_shape, y_shape, stride, padding):
    return Geometry(tuple(x_shape), tuple(w_shape), tuple(y_shape), pair(stride), pair(padding))


def _output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """nn.conv2d(x, weight, bias, stride, padding) with bfloat16 products."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    n, _, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    y_shape = (n, out_channels, _output_size(h, kh, sh, ph), _output_size(w, kw, sw, pw))
    return _with_bias(_apply("forward", _geometry(x.shape, weight.shape, y_shape, stride, padding), x, weight), bias)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """nn.conv_transpose2d(x, weight, bias, stride, padding, output_padding) with bfloat16 products:
    the data gradient of the convolution it transposes."""
    (sh, sw), (ph, pw), (qh, qw) = pair(stride), pair(padding), pair(output_padding)
    n, _, h, w = x.shape
    _, out_channels, kh, kw = weight.shape
    out_shape = (n, out_channels, (h - 1) * sh - 2 * ph + kh + qh, (w - 1) * sw - 2 * pw + kw + qw)
    geometry = _geometry(out_shape, weight.shape, x.shape, stride, padding)
    return _with_bias(_apply("backward_data", geometry, x, weight), bias)


def routed(kind, x, weight, stride, padding, output_padding):
    """Whether a convolution goes through this module (asked only while it is enabled): on the CPU,
    float32, and not cropped at the bottom or right by more than its padding (oneDNN takes no
    negative padding)."""
    if jt.flags.use_cuda or x.dtype != "float32" or weight.dtype != "float32":
        return False
    if kind == "conv_transpose2d":
        crop = pair(output_padding)
    else:   # the rows and columns that the stride leaves over
        crop = [(size + 2 * p - k) % s for size, k, s, p in zip(x.shape[2:], weight.shape[2:], pair(stride),
                                                               pair(padding))]
    return all(c <= p for c, p in zip(crop, pair(padding)))


ROUTE = Route(sys.modules[__name__])

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags():
    """The instruction-set flags of this CPU (empty where /proc/cpuinfo does not exist)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return set()
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def check_supported():
    """None when bfloat16 convolutions can run here, else the reason in one sentence."""
    from jgan import runtime
    if jt.flags.use_cuda:
        return "precision bf16 is for the CPU (oneDNN); on CUDA use precision fp32"
    if not runtime.onednn_active():
        return f"precision bf16 runs its convolutions in oneDNN, which is not active; {runtime.ONEDNN_FIX}"
    if not cpu_flags() & set(BF16_FLAGS):
        return ("this CPU has no bfloat16 instructions (AMX or AVX-512 BF16), so precision bf16 would be slower, "
                "not faster; use precision fp32")
    return None


def enable(on):
    """Route Jittor's CPU convolutions through bfloat16 primitives (True) or give them back (False)."""
    if on:
        ROUTE.install()
    else:
        ROUTE.uninstall()


def enabled():
    return bool(ROUTE.originals)
