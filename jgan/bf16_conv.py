"""Convolutions with bfloat16 products and float32 sums on the CPU (`train.precision: bf16`).

On a CPU with bfloat16 instructions (Intel AMX or AVX-512 BF16), oneDNN multiplies bfloat16 values
several times faster than float32 ones and adds the products in float32. Here each convolution,
and each of its two gradients, is one oneDNN primitive that reads float32 tensors, rounds its two
operands to bfloat16 (8 bits of mantissa) and writes a float32 result: mixed precision as GPUs
train with it, for the convolutions only. Weights, optimiser moments, normalisation and every
other op stay float32. The three primitives (forward, backward data, backward weights) are each
other's adjoints, so gradients of any order (the WGAN-GP and R1 penalties) stay on them. Where
oneDNN's bfloat16 gradient primitives are slow (many output channels, or a one-pixel output), a
gradient is instead one bfloat16 matrix product: the weight gradient of the output gradient and the
columns (im2col) of the input, the data gradient of the weights and the output gradient, summed
back into the image (col2im); the same products, summed in float32.

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
#include <cstdint>
#include <algorithm>
#include <cstring>
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

// f rounded to bfloat16, to nearest with ties to even (as oneDNN rounds); NaN stays NaN
inline uint16_t bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// The sizes of a convolution as matrices: its output gradient dy is (outputs, rows), the columns
// (im2col) of x are (rows, depth) and w is (outputs, depth)
struct Sizes {
    long images, channels, height, width, outputs, kh, kw, taps, out_h, out_w, pixels, rows, depth;
    explicit Sizes(const Geometry& g)
        : images(g.x[0]), channels(g.x[1]), height(g.x[2]), width(g.x[3]), outputs(g.w[0]), kh(g.w[2]),
          kw(g.w[3]), taps(kh * kw), out_h(g.y[2]), out_w(g.y[3]), pixels(out_h * out_w),
          rows(images * pixels), depth(channels * taps) {}
};

// y (N, O, OH, OW) as the bfloat16 matrix (O, N*OH*OW)
inline memory by_output(const Sizes& z, const float* y) {
    memory m({{z.outputs, z.rows}, dt::bf16, tag::ab}, cpu());
    uint16_t* out = static_cast<uint16_t*>(m.get_data_handle());
    #pragma omp parallel for collapse(2)
    for (long n = 0; n < z.images; n++)
        for (long o = 0; o < z.outputs; o++)
            for (long p = 0; p < z.pixels; p++)
                out[o * z.rows + n * z.pixels + p] = bfloat16(y[(n * z.outputs + o) * z.pixels + p]);
    return m;
}

// the run [begin, end) of outputs o whose input o * stride + offset lies in [0, size)
struct Run {
    long begin, end;
    Run(long outputs, long stride, long offset, long size)
        : begin(offset >= 0 ? 0 : std::min(outputs, (stride - 1 - offset) / stride)),
          end(std::max(begin, std::min(outputs, (size - 1 - offset + stride) / stride))) {}
};

// calls visit(k, at, begin, end) for every output row (n, oy) of one tap of one channel of x: the
// row starts at k in the columns, and its columns [begin, end) read x at at + ox * stride
template <class Visit>
inline void for_each_row(const Sizes& z, const Geometry& g, long c, long tap, Visit visit) {
    const long ky = tap / z.kw - g.pad_l[0], kx = tap % z.kw - g.pad_l[1];
    const Run rows(z.out_h, g.stride[0], ky, z.height), columns(z.out_w, g.stride[1], kx, z.width);
    for (long n = 0; n < z.images; n++)
        for (long oy = 0; oy < z.out_h; oy++) {
            const bool inside = oy >= rows.begin && oy < rows.end;
            visit((n * z.out_h + oy) * z.out_w, ((n * z.channels + c) * z.height + oy * g.stride[0] + ky) * z.width + kx,
                  inside ? columns.begin : 0, inside ? columns.end : 0);
        }
}

inline void multiply(const memory& a, const memory& b, const memory& result) {
    matmul::primitive_desc pd({a.get_desc(), b.get_desc(), result.get_desc()}, cpu());
    stream s(cpu());
    matmul(pd).execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, result}});
    s.wait();
}

// the weight gradient as one bfloat16 matrix product: dw (O, depth) = dy (O, rows) times the
// columns of x (rows, depth), rounded to bfloat16 while they are laid out
inline void backward_weights_by_product(const Geometry& g, float* x, float* dy, float* dw) {
    const Sizes z(g);
    memory columns({{z.rows, z.depth}, dt::bf16, tag::ba}, cpu());   // column-major: a column's rows together
    uint16_t* b = static_cast<uint16_t*>(columns.get_data_handle());
    #pragma omp parallel for collapse(2)
    for (long c = 0; c < z.channels; c++)
        for (long tap = 0; tap < z.taps; tap++) {
            uint16_t* column = b + (c * z.taps + tap) * z.rows;
            const long stride = g.stride[1];
            for_each_row(z, g, c, tap, [&](long k, long at, long begin, long end) {
                uint16_t* out = column + k;
                for (long ox = 0; ox < begin; ox++) out[ox] = 0;
                for (long ox = begin; ox < end; ox++) out[ox] = bfloat16(x[at + ox * stride]);
                for (long ox = end; ox < z.out_w; ox++) out[ox] = 0;
            });
        }
    multiply(by_output(z, dy), columns, memory({{z.outputs, z.depth}, dt::f32, tag::ab}, cpu(), dw));
}

// the data gradient as one bfloat16 matrix product, the columns of dx (depth, rows) = w^T (depth, O)
// times dy (O, rows), then summed into dx (col2im)
inline void backward_data_by_product(const Geometry& g, float* dy, float* w, float* dx) {
    const Sizes z(g);
    memory weights({{z.depth, z.outputs}, dt::bf16, tag::ba}, cpu());   // w as it is, transposed
    uint16_t* wt = static_cast<uint16_t*>(weights.get_data_handle());
    const long count = z.outputs * z.depth;
    #pragma omp parallel for
    for (long i = 0; i < count; i++) wt[i] = bfloat16(w[i]);
    memory columns({{z.depth, z.rows}, dt::f32, tag::ab}, cpu());
    multiply(weights, by_output(z, dy), columns);
    const float* cols = static_cast<const float*>(columns.get_data_handle());
    #pragma omp parallel for
    for (long c = 0; c < z.channels; c++) {
        for (long n = 0; n < z.images; n++)
            std::memset(dx + (n * z.channels + c) * z.height * z.width, 0, sizeof(float) * z.height * z.width);
        for (long tap = 0; tap < z.taps; tap++) {
            const float* column = cols + (c * z.taps + tap) * z.rows;
            const long stride = g.stride[1];
            for_each_row(z, g, c, tap, [&](long k, long at, long begin, long end) {
                for (long ox = begin; ox < end; ox++) dx[at + ox * stride] += column[k + ox];
            });
        }
    }
}
}
"""

# kind: which of (x, w, y) are the kernel's two operands and which is its result
_ROLES = {"forward": ("x", "w", "y"), "backward_data": ("y", "w", "x"), "backward_weights": ("x", "y", "w")}

Geometry = namedtuple("Geometry", "x w y stride padding")


# the fewest output channels from which a gradient runs as a matrix product (see by_product)
PRODUCT_OUTPUTS = {"backward_weights": 256, "backward_data": 512}


def by_product(kind, geometry):
    """Whether a gradient runs as one matrix product over the columns of x (im2col, or col2im for
    the data gradient) rather than as oneDNN 2.6's bfloat16 primitive, which is slow where the
    output channels are many or the output is one pixel (a dense layer); elsewhere laying out the
    columns costs more than the product saves (README, "bfloat16 convolutions")."""
    if kind not in PRODUCT_OUTPUTS:
        return False
    outputs, pixels = geometry.w[0], geometry.y[2] * geometry.y[3]
    return outputs >= PRODUCT_OUTPUTS[kind] or (outputs >= 64 and pixels == 1)


def _function(kind, geometry):
    return f"{kind}_by_product" if by_product(kind, geometry) else kind


def _source(kind, geometry):
    """The kernel's C++ body: shapes at run time, stride and padding in the source."""
    first, second, result = (("in0", "in1", "out0")[_ROLES[kind].index(name)] for name in "xwy")
    dims = ["{" + ", ".join(f"{tensor}_shape{i}" for i in range(4)) + "}" for tensor in (first, second, result)]
    (sh, sw), (ph, pw) = geometry.stride, geometry.padding
    return (f"jgan_bf16::{_function(kind, geometry)}(jgan_bf16::geometry({', '.join(dims)}, {sh}, {sw}, {ph}, "
            f"{pw}), in0_p, in1_p, out0_p);")


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
