"""Convolutions as oneDNN primitives called directly on the CPU: bfloat16 or float32 operands,
channels-first or channels-last activations.

bfloat16 (`train.precision: bf16`): on a CPU with bfloat16 instructions (Intel AMX or AVX-512
BF16), oneDNN multiplies bfloat16 values several times faster than float32 ones and adds the
products in float32. Each convolution, and each of its two gradients, is then one oneDNN
primitive that reads float32 tensors, rounds its two operands to bfloat16 (8 bits of mantissa) and
writes a float32 result: mixed precision as GPUs train with it, for the convolutions only. Weights,
optimiser moments, normalisation and every other op stay float32. Where oneDNN's bfloat16
gradient primitives are slow (many output channels, or a one-pixel output), a gradient is instead
one bfloat16 matrix product: the weight gradient of the output gradient and the columns (im2col)
of the input, the data gradient of the weights and the output gradient, summed back into the
image (col2im); the same products, summed in float32. `enable_bfloat16(True)` routes Jittor's
convolutions (see jgan.conv_route) through these; `check_supported()` says in one sentence why
they cannot run here, if they cannot.

Channels-last (N, H, W, C) activations are the layout oneDNN's primitives compute in, so a network
that keeps its activations so between layers (the DCGAN family's, jgan.networks.dcgan) pays no
conversion of layout into and out of each call; Jittor's own convolutions take (N, C, H, W) only.
Such a network calls conv2d and conv_transpose2d here directly, with float32 operands unless
bfloat16 is enabled.

In every case the three primitives (forward, backward data, backward weights) are each other's
adjoints, so gradients of any order (the WGAN-GP and R1 penalties) stay on them. Float32 ones run
by Winograd's algorithm where asked (`winograd=True`, see jgan.winograd) and oneDNN has it for the
convolution, else by the direct one. Each primitive is made at its first call and kept for the
process, one per geometry.
"""
import sys
from collections import namedtuple
from pathlib import Path

import jittor as jt

from jgan.autograd import Function
from jgan.conv_route import Route, pair

_HEADER = r"""
#include <oneapi/dnnl/dnnl.hpp>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
namespace jgan_onednn {
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

inline engine& cpu() { static engine e(engine::kind::cpu, 0); return e; }

// x (N, C, H, W) convolved with w (O, C, KH, KW) into y (N, O, OH, OW): the dimensions in that
// order, whatever the layout; x and y channels-last, (N, H, W, C), where nhwc; the products'
// operands of type `operand` (bf16 or f32); by Winograd's algorithm where winograd and oneDNN has
// it for the geometry
struct Geometry {
    memory::dims x, w, y, stride, pad_l, pad_r;
    bool nhwc;
    dt operand;
    bool winograd;
    memory::desc activation(const memory::dims& d) const { return {d, dt::f32, nhwc ? tag::acdb : tag::abcd}; }
    memory::desc x_desc() const { return activation(x); }
    memory::desc w_desc() const { return {w, dt::f32, tag::abcd}; }
    memory::desc y_desc() const { return activation(y); }
};

inline Geometry geometry(memory::dims x, memory::dims w, memory::dims y, int sh, int sw, int ph, int pw, bool nhwc,
                         bool bf16, bool winograd) {
    return {x, w, y, {sh, sw}, {ph, pw},
            {(y[2] - 1) * sh + w[2] - x[2] - ph, (y[3] - 1) * sw + w[3] - x[3] - pw}, nhwc, bf16 ? dt::bf16 : dt::f32,
            winograd};
}

inline Geometry direct(Geometry g) {
    g.winograd = false;
    return g;
}

inline memory::desc any(const memory::dims& d, dt type) { return {d, type, tag::any}; }

// an activation's layout in the primitive: the primitive's choice, or channels-last where the
// tensors are (else oneDNN's direct float32 primitives choose a blocked layout and convert to it;
// its Winograd primitives compute in a blocked layout only)
inline memory::desc activation_choice(const Geometry& g, const memory::dims& d, dt type) {
    return g.nhwc && !g.winograd ? memory::desc(d, type, tag::acdb) : any(d, type);
}

// the float32 tensor at p (laid out as `user` says) as the primitive wants it: itself, or a converted copy
inline memory operand(float* p, const memory::desc& user_desc, const memory::desc& want, stream& s) {
    memory user(user_desc, cpu(), p);
    if (want == user_desc) return user;
    memory copy(want, cpu());
    reorder(user, copy).execute(s, user, copy);
    return copy;
}

// a primitive and its descriptor
template <class Op>
struct Made {
    typename Op::primitive_desc pd;
    Op op;
};

inline std::string key_of(const Geometry& g) {
    std::string key = std::to_string(g.nhwc) + std::to_string(g.winograd) + std::to_string((int)g.operand);
    for (const memory::dims* dims : {&g.x, &g.w, &g.y, &g.stride, &g.pad_l, &g.pad_r})
        for (memory::dim d : *dims) key += "," + std::to_string(d);
    return key;
}

// the primitive that make() describes, made once per geometry: a live primitive keeps oneDNN's
// scratchpad allocated (a Winograd gradient's holds megabytes, which a primitive made at every
// call would allocate and fault in again)
template <class Op, class Make>
inline const Made<Op>& made(const Geometry& g, Make make) {
    static std::mutex lock;
    static std::map<std::string, Made<Op>> primitives;
    std::lock_guard<std::mutex> hold(lock);
    const std::string key = key_of(g);
    auto found = primitives.find(key);
    if (found == primitives.end()) {
        typename Op::primitive_desc pd = make();
        found = primitives.emplace(key, Made<Op>{pd, Op(pd)}).first;
    }
    return found->second;
}

// run a primitive on two float32 operands, writing its float32 result at out
template <class Op>
inline void execute(const Made<Op>& primitive, int a_arg, float* a, const memory::desc& a_desc,
                    int b_arg, float* b, const memory::desc& b_desc, int out_arg, float* out,
                    const memory::desc& out_desc) {
    const typename Op::primitive_desc& pd = primitive.pd;
    stream s(cpu());
    std::unordered_map<int, memory> args{
        {a_arg, operand(a, a_desc, pd.query_md(query::exec_arg_md, a_arg), s)},
        {b_arg, operand(b, b_desc, pd.query_md(query::exec_arg_md, b_arg), s)}};
    memory user(out_desc, cpu(), out);
    memory::desc got = pd.query_md(query::exec_arg_md, out_arg);
    memory result = got == out_desc ? user : memory(got, cpu());
    args.insert({out_arg, result});
    primitive.op.execute(s, args);
    if (result != user) reorder(result, user).execute(s, result, user);
    s.wait();
}

inline algorithm algorithm_of(const Geometry& g) {
    return g.winograd ? algorithm::convolution_winograd : algorithm::convolution_direct;
}

// the forward primitive: by Winograd's algorithm where asked and oneDNN has one, else direct
inline convolution_forward::primitive_desc forward_pd(const Geometry& g, dt result) {
    try {
        return {{prop_kind::forward_training, algorithm_of(g), activation_choice(g, g.x, g.operand),
                 any(g.w, g.operand), activation_choice(g, g.y, result), g.stride, g.pad_l, g.pad_r}, cpu()};
    } catch (const dnnl::error&) {
        if (!g.winograd) throw;
        return forward_pd(direct(g), result);
    }
}

inline void forward(const Geometry& g, float* x, float* w, float* y) {
    using Op = convolution_forward;
    execute(made<Op>(g, [&] { return forward_pd(g, dt::f32); }), DNNL_ARG_SRC, x, g.x_desc(), DNNL_ARG_WEIGHTS, w,
            g.w_desc(), DNNL_ARG_DST, y, g.y_desc());
}

// a gradient primitive of the convolution, with x, w and y of these types
template <class Op>
inline typename Op::primitive_desc gradient_pd(const Geometry& g, dt x, dt w, dt y) {
    try {
        return {{algorithm_of(g), activation_choice(g, g.x, x), any(g.w, w), activation_choice(g, g.y, y),
                 g.stride, g.pad_l, g.pad_r}, cpu(), forward_pd(g, g.operand)};
    } catch (const dnnl::error&) {
        if (!g.winograd) throw;
        return gradient_pd<Op>(direct(g), x, w, y);
    }
}

inline void backward_data(const Geometry& g, float* dy, float* w, float* dx) {
    using Op = convolution_backward_data;
    execute(made<Op>(g, [&] { return gradient_pd<Op>(g, dt::f32, g.operand, g.operand); }), DNNL_ARG_DIFF_DST, dy,
            g.y_desc(), DNNL_ARG_WEIGHTS, w, g.w_desc(), DNNL_ARG_DIFF_SRC, dx, g.x_desc());
}

inline void backward_weights(const Geometry& g, float* x, float* dy, float* dw) {
    using Op = convolution_backward_weights;
    execute(made<Op>(g, [&] { return gradient_pd<Op>(g, g.operand, dt::f32, g.operand); }), DNNL_ARG_SRC, x,
            g.x_desc(), DNNL_ARG_DIFF_DST, dy, g.y_desc(), DNNL_ARG_DIFF_WEIGHTS, dw, g.w_desc());
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

// y (N, O, OH, OW) as the bfloat16 matrix (O, N*OH*OW); channels-last y (N, OH, OW, O) as the
// matrix (N*OH*OW, O), which is the same matrix transposed (tag ba): y converted as it lies
inline memory by_output(const Sizes& z, const Geometry& g, const float* y) {
    if (g.nhwc) {
        memory m({{z.rows, z.outputs}, dt::bf16, tag::ab}, cpu());
        uint16_t* out = static_cast<uint16_t*>(m.get_data_handle());
        const long count = z.rows * z.outputs;
        #pragma omp parallel for
        for (long i = 0; i < count; i++) out[i] = bfloat16(y[i]);
        return m;
    }
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

// channels-last: calls visit(tap, at) for every tap of output pixel (oy, ox) of image n, with at
// the offset of the tap's input pixel in x (N, H, W, C), or -1 where the tap falls in the padding
template <class Visit>
inline void for_each_tap(const Sizes& z, const Geometry& g, long n, long oy, long ox, Visit visit) {
    for (long tap = 0; tap < z.taps; tap++) {
        const long iy = oy * g.stride[0] + tap / z.kw - g.pad_l[0], ix = ox * g.stride[1] + tap % z.kw - g.pad_l[1];
        const bool inside = iy >= 0 && iy < z.height && ix >= 0 && ix < z.width;
        visit(tap, inside ? ((n * z.height + iy) * z.width + ix) * z.channels : -1);
    }
}

inline void multiply(const memory& a, const memory& b, const memory& result) {
    matmul::primitive_desc pd({a.get_desc(), b.get_desc(), result.get_desc()}, cpu());
    stream s(cpu());
    matmul(pd).execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, result}});
    s.wait();
}

// the columns (im2col) of x as the bfloat16 matrix (rows, depth), column-major (a column's rows together)
inline memory columns_of(const Sizes& z, const Geometry& g, const float* x) {
    memory columns({{z.rows, z.depth}, dt::bf16, tag::ba}, cpu());
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
    return columns;
}

// the same from channels-last x, row-major: each row (one output pixel) read from C-long runs of x
inline memory columns_of_nhwc(const Sizes& z, const Geometry& g, const float* x) {
    memory columns({{z.rows, z.depth}, dt::bf16, tag::ab}, cpu());
    uint16_t* b = static_cast<uint16_t*>(columns.get_data_handle());
    #pragma omp parallel for collapse(2)
    for (long n = 0; n < z.images; n++)
        for (long oy = 0; oy < z.out_h; oy++)
            for (long ox = 0; ox < z.out_w; ox++) {
                uint16_t* row = b + ((n * z.out_h + oy) * z.out_w + ox) * z.depth;
                for_each_tap(z, g, n, oy, ox, [&](long tap, long at) {
                    for (long c = 0; c < z.channels; c++) row[c * z.taps + tap] = at < 0 ? 0 : bfloat16(x[at + c]);
                });
            }
    return columns;
}

// the weight gradient as one bfloat16 matrix product: dw (O, depth) = dy (O, rows) times the
// columns of x (rows, depth), rounded to bfloat16 while they are laid out
inline void backward_weights_by_product(const Geometry& g, float* x, float* dy, float* dw) {
    const Sizes z(g);
    memory gradient = by_output(z, g, dy);
    memory by_row = g.nhwc ? memory({{z.outputs, z.rows}, dt::bf16, tag::ba}, cpu(), gradient.get_data_handle())
                           : gradient;
    multiply(by_row, g.nhwc ? columns_of_nhwc(z, g, x) : columns_of(z, g, x),
             memory({{z.outputs, z.depth}, dt::f32, tag::ab}, cpu(), dw));
}

// the columns of dx summed into dx (col2im): from the matrix (depth, rows), or channels-last from (rows, depth)
inline void sum_columns(const Sizes& z, const Geometry& g, const float* cols, float* dx) {
    if (g.nhwc) {
        #pragma omp parallel for
        for (long n = 0; n < z.images; n++) {
            std::memset(dx + n * z.height * z.width * z.channels, 0, sizeof(float) * z.height * z.width * z.channels);
            for (long oy = 0; oy < z.out_h; oy++)
                for (long ox = 0; ox < z.out_w; ox++) {
                    const float* row = cols + ((n * z.out_h + oy) * z.out_w + ox) * z.depth;
                    for_each_tap(z, g, n, oy, ox, [&](long tap, long at) {
                        if (at < 0) return;
                        for (long c = 0; c < z.channels; c++) dx[at + c] += row[c * z.taps + tap];
                    });
                }
        }
        return;
    }
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

// the data gradient as one bfloat16 matrix product, the columns of dx (depth, rows) = w^T (depth, O)
// times dy (O, rows), or channels-last (rows, depth) = dy (rows, O) times w (O, depth); then col2im
inline void backward_data_by_product(const Geometry& g, float* dy, float* w, float* dx) {
    const Sizes z(g);
    memory weights({{z.outputs, z.depth}, dt::bf16, tag::ab}, cpu());
    uint16_t* wb = static_cast<uint16_t*>(weights.get_data_handle());
    const long count = z.outputs * z.depth;
    #pragma omp parallel for
    for (long i = 0; i < count; i++) wb[i] = bfloat16(w[i]);
    memory columns(g.nhwc ? memory::desc({z.rows, z.depth}, dt::f32, tag::ab)
                          : memory::desc({z.depth, z.rows}, dt::f32, tag::ab), cpu());
    if (g.nhwc)
        multiply(by_output(z, g, dy), weights, columns);
    else
        multiply(memory({{z.depth, z.outputs}, dt::bf16, tag::ba}, cpu(), wb), by_output(z, g, dy), columns);
    sum_columns(z, g, static_cast<const float*>(columns.get_data_handle()), dx);
}
}
"""

# kind: which of (x, w, y) are the kernel's two operands and which is its result
_ROLES = {"forward": ("x", "w", "y"), "backward_data": ("y", "w", "x"), "backward_weights": ("x", "y", "w")}

# x, w and y: the shapes (N, C, H, W), (O, C, KH, KW), (N, O, OH, OW), whatever the layout; x and y
# are laid out (N, H, W, C) where channels_last; the products' operands are bfloat16 or float32
Geometry = namedtuple("Geometry", "x w y stride padding channels_last bfloat16 winograd", defaults=(False, True, False))


# the fewest output channels from which a gradient runs as a matrix product (see by_product)
PRODUCT_OUTPUTS = {"backward_weights": 256, "backward_data": 512}


def by_product(kind, geometry):
    """Whether a gradient runs as one matrix product over the columns of x (im2col, or col2im for
    the data gradient) rather than as oneDNN 2.6's bfloat16 primitive, which is slow where the
    output channels are many or the output is one pixel (a dense layer); elsewhere laying out the
    columns costs more than the product saves (README, "bfloat16 convolutions"). float32 gradients
    always take the primitives."""
    if not geometry.bfloat16 or kind not in PRODUCT_OUTPUTS:
        return False
    outputs, pixels = geometry.w[0], geometry.y[2] * geometry.y[3]
    return outputs >= PRODUCT_OUTPUTS[kind] or (outputs >= 64 and pixels == 1)


def _function(kind, geometry):
    return f"{kind}_by_product" if by_product(kind, geometry) else kind


def _logical(tensor, name, geometry):
    """The C++ dims of one kernel tensor, in (N, C, H, W) order whatever its layout."""
    order = (0, 3, 1, 2) if geometry.channels_last and name != "w" else (0, 1, 2, 3)
    return "{" + ", ".join(f"{tensor}_shape{i}" for i in order) + "}"


def _source(kind, geometry):
    """The kernel's C++ body: shapes at run time, stride, padding, layout and operand type in the source."""
    tensors = {name: ("in0", "in1", "out0")[_ROLES[kind].index(name)] for name in "xwy"}
    dims = [_logical(tensors[name], name, geometry) for name in "xwy"]
    (sh, sw), (ph, pw) = geometry.stride, geometry.padding
    return (f"jgan_onednn::{_function(kind, geometry)}(jgan_onednn::geometry({', '.join(dims)}, {sh}, {sw}, {ph}, "
            f"{pw}, {str(geometry.channels_last).lower()}, {str(geometry.bfloat16).lower()}, "
            f"{str(geometry.winograd).lower()}), in0_p, in1_p, out0_p);")


def _layout(shape, geometry):
    """A (N, C, H, W) shape of x or y as the tensor lies: (N, H, W, C) where channels_last."""
    n, c, h, w = shape
    return (n, h, w, c) if geometry.channels_last else tuple(shape)


def _kernel(kind, geometry, a, b):
    result = _ROLES[kind][2]
    shape = getattr(geometry, result)
    if result != "w":
        shape = _layout(shape, geometry)
    return jt.code(shape, "float32", [a, b], cpu_header=_HEADER, cpu_src=_source(kind, geometry))


class _Convolution(Function):
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


def with_bias(y, bias, channels_last):
    """y plus a per-channel bias (none where bias is None), y (N, H, W, C) where channels_last."""
    if bias is None:
        return y
    return y + bias.broadcast(y.shape, [0, 1, 2] if channels_last else [0, 2, 3])


def _geometry(x_shape, w_shape, y_shape, stride, padding, channels_last, bfloat16, winograd=False):
    return Geometry(tuple(x_shape), tuple(w_shape), tuple(y_shape), pair(stride), pair(padding), channels_last,
                    bfloat16, winograd and not bfloat16)


def _output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _dims(x, channels_last):
    """(N, C, H, W) of an input laid out (N, H, W, C) where channels_last."""
    n, *rest = x.shape
    return (n, rest[2], rest[0], rest[1]) if channels_last else tuple(x.shape)


def conv2d(x, weight, bias=None, stride=1, padding=0, channels_last=False, bfloat16=True, winograd=False):
    """nn.conv2d(x, weight, bias, stride, padding) with bfloat16 products (float32 ones where not
    bfloat16, by Winograd's algorithm where also winograd and oneDNN has it for this convolution); x
    and the result (N, H, W, C) where channels_last (the weight stays (O, C, KH, KW))."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    x_shape = _dims(x, channels_last)
    n, _, h, w = x_shape
    out_channels, _, kh, kw = weight.shape
    y_shape = (n, out_channels, _output_size(h, kh, sh, ph), _output_size(w, kw, sw, pw))
    geometry = _geometry(x_shape, weight.shape, y_shape, stride, padding, channels_last, bfloat16, winograd)
    return with_bias(_apply("forward", geometry, x, weight), bias, channels_last)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, channels_last=False,
                     bfloat16=True):
    """nn.conv_transpose2d(x, weight, bias, stride, padding, output_padding): the data gradient of the
    convolution it transposes. Products and layout as conv2d."""
    (sh, sw), (ph, pw), (qh, qw) = pair(stride), pair(padding), pair(output_padding)
    x_shape = _dims(x, channels_last)
    n, _, h, w = x_shape
    _, out_channels, kh, kw = weight.shape
    out_shape = (n, out_channels, (h - 1) * sh - 2 * ph + kh + qh, (w - 1) * sw - 2 * pw + kw + qw)
    geometry = _geometry(out_shape, weight.shape, x_shape, stride, padding, channels_last, bfloat16)
    return with_bias(_apply("backward_data", geometry, x, weight), bias, channels_last)


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


def enable_bfloat16(on):
    """Route Jittor's CPU convolutions through bfloat16 primitives (True) or give them back (False)."""
    ROUTE.switch(on)


def bfloat16_enabled():
    return ROUTE.installed


def channels_last_available():
    """Whether a network may keep its activations channels-last and convolve them here: on the CPU,
    with oneDNN active."""
    from jgan import runtime
    return not jt.flags.use_cuda and runtime.onednn_active()
