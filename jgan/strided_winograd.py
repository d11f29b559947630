"""Float32 4x4 stride-2 convolutions, and their transposes, by Winograd's F(4x4, 2x2) on the CPU.

The DCGAN family's layers are all 4x4 convolutions of stride 2 and padding 1 (the critic's) and
their transposes (the generator's, WGANP's resize-convolutions among them). Regrouping the input's
pixels in 2x2 blocks (space-to-depth: four times the channels at half the size) turns such a
convolution into a 2x2 one of stride 1, and Winograd's F(4x4, 2x2) computes each 4x4 tile of that
one's output from a 5x5 tile of blocks with 25 products per pair of channels instead of 64. The
products are 25 matrix products (one per point of the tile: tiles x channels by channels x
outputs, oneDNN's sgemm); three linear maps around them carry the tiles of the input, of the
weights and of the output in and out of Winograd's domain. oneDNN has no Winograd form of these
convolutions (its primitives take 3x3 stride-1 ones only).

A convolution, its transpose (its data gradient) and its weight gradient are each one
differentiable computation whose gradients are the other two (so gradients of any order, the
WGAN-GP penalty's, stay here), built of the same maps and products in other orders. None keeps
anything of Winograd's domain for its gradients (the input's tiles are 1.56 times the input, the
weights' 6.25 times the weights): the gradients transform again, both from one transform of the
result's gradient. The sums are the convolution's in another order, so results differ from the
direct algorithm's by rounding only (the interpolation points 0, 1, -1, 1/2 and infinity keep the
transforms' constants small). Activations are channels-last, (N, H, W, C), as the DCGAN family's
nets keep them (jgan.networks.dcgan); weights are (O, C, 4, 4) as Jittor's. Only convolutions whose
output has FEWEST_TILES tiles or more are worth it: the weights' transforms are paid at every call.
"""
from collections import namedtuple

import jittor as jt

from jgan import onednn_conv
from jgan.autograd import Function
from jgan.conv_route import pair

TILE = 4           # output pixels per side of a tile
POINTS = 25        # 5x5 points of Winograd's domain per tile
FEWEST_CHANNELS = 16   # below it (an RGB image's side) the transforms cost more than the products save
FEWEST_TILES = 64      # output tiles of all images below which the weights' transforms cost more
_state = {"enabled": False}

_HEADER = r"""
#include <oneapi/dnnl/dnnl.h>
#include <algorithm>
#include <cstring>
#include <vector>
namespace jgan_winograd42 {
constexpr int CB = 16;  // channels transformed together (one AVX-512 vector)
// F(4x4, 2x2) at the points 0, 1, -1, 1/2 and infinity: y = AT [(G g G^T) . (BT d BT^T)] AT^T
constexpr float BT[5][5] = {{0.5f, -1.f, -0.5f, 1.f, 0.f}, {0.f, -0.5f, 0.5f, 1.f, 0.f},
                            {0.f, 0.5f, -1.5f, 1.f, 0.f}, {0.f, -1.f, 0.f, 1.f, 0.f},
                            {0.f, 0.5f, -1.f, -0.5f, 1.f}};
constexpr float B[5][5] = {{0.5f, 0.f, 0.f, 0.f, 0.f}, {-1.f, -0.5f, 0.5f, -1.f, 0.5f},
                           {-0.5f, 0.5f, -1.5f, 0.f, -1.f}, {1.f, 1.f, 1.f, 1.f, -0.5f},
                           {0.f, 0.f, 0.f, 0.f, 1.f}};
constexpr float AT[4][5] = {{1.f, 1.f, 1.f, 1.f, 0.f}, {0.f, 1.f, -1.f, 0.5f, 0.f},
                            {0.f, 1.f, 1.f, 0.25f, 0.f}, {0.f, 1.f, -1.f, 0.125f, 1.f}};
constexpr float A[5][4] = {{1.f, 0.f, 0.f, 0.f}, {1.f, 1.f, 1.f, 1.f}, {1.f, -1.f, 1.f, -1.f},
                           {1.f, 0.5f, 0.25f, 0.125f}, {0.f, 0.f, 0.f, 1.f}};
constexpr float G[5][2] = {{2.f, 0.f}, {1.f, 1.f}, {-1.f / 3, 1.f / 3}, {-8.f / 3, -4.f / 3}, {0.f, 1.f}};
constexpr float GT[2][5] = {{2.f, 1.f, -1.f / 3, -8.f / 3, 0.f}, {0.f, 1.f, 1.f / 3, -4.f / 3, 1.f}};

// CB channels as one vector (GCC's vector extension: whatever SIMD the CPU has)
typedef float vec __attribute__((vector_size(CB * sizeof(float))));

// the first n of CB channels at src, zeros after them (a last, partial block)
inline vec load(const float* src, int n) {
    vec v = {};
    if (n == CB) std::memcpy(&v, src, sizeof(vec));
    else std::memcpy(&v, src, n * sizeof(float));
    return v;
}

// the first n of CB channels of v to dst
inline void store(float* dst, const vec& v, int n) {
    if (n == CB) std::memcpy(dst, &v, sizeof(vec));
    else std::memcpy(dst, &v, n * sizeof(float));
}

// z (P x P tile) = L x L^T of a Q x Q tile x, each element a vector of channels
template <int P, int Q>
inline void two_sided(const float (&L)[P][Q], const vec* x, vec* z) {
    vec half[P][Q];
    #pragma GCC unroll 8
    for (int p = 0; p < P; p++)
        #pragma GCC unroll 8
        for (int q2 = 0; q2 < Q; q2++) {
            vec sum = {};
            #pragma GCC unroll 8
            for (int q = 0; q < Q; q++) sum += L[p][q] * x[q * Q + q2];
            half[p][q2] = sum;
        }
    #pragma GCC unroll 8
    for (int p = 0; p < P; p++)
        #pragma GCC unroll 8
        for (int p2 = 0; p2 < P; p2++) {
            vec sum = {};
            #pragma GCC unroll 8
            for (int q2 = 0; q2 < Q; q2++) sum += L[p2][q2] * half[p][q2];
            z[p * P + p2] = sum;
        }
}

// the tiles of one image: (tiles down, tiles across) of an output of oh x ow pixels
struct Tiles {
    int down, across;
    Tiles(int oh, int ow) : down((oh + 3) / 4), across((ow + 3) / 4) {}
    int count() const { return down * across; }
};

constexpr int SPAN = 10;  // input pixels per side of a tile's 5x5 blocks

// a patch: the rows x cols pixels of channels c at (r0, c0) of image n of x (N, H, W, C), laid out
// (rows, cols, C) as in x, so that each row is one run of memory; zeros outside the image
struct Patch {
    int rows, cols, h, w, c, r0, c0, lo, hi;   // lo, hi: the columns inside the image
    Patch(int rows, int cols, int h, int w, int c, int r0, int c0)
        : rows(rows), cols(cols), h(h), w(w), c(c), r0(r0), c0(c0), lo(std::max(0, -c0)),
          hi(std::max(std::max(0, -c0), std::min(cols, w - c0))) {}
    long long at(int n, int i) const { return (((long long)n * h + r0 + i) * w + c0 + lo) * c; }
    bool inside(int i) const { return r0 + i >= 0 && r0 + i < h && hi > lo; }
    void read(const float* x, int n, float* patch) const {
        std::fill(patch, patch + (long long)rows * cols * c, 0.f);
        for (int i = 0; i < rows; i++)
            if (inside(i)) std::memcpy(patch + ((long long)i * cols + lo) * c, x + at(n, i), (hi - lo) * c * sizeof(float));
    }
    void write(const float* patch, int n, float* x) const {
        for (int i = 0; i < rows; i++)
            if (inside(i)) std::memcpy(x + at(n, i), patch + ((long long)i * cols + lo) * c, (hi - lo) * c * sizeof(float));
    }
    void add(const float* patch, int n, float* x) const {
        for (int i = 0; i < rows; i++) {
            if (!inside(i)) continue;
            float* dst = x + at(n, i);
            const float* src = patch + ((long long)i * cols + lo) * c;
            for (long long k = 0; k < (long long)(hi - lo) * c; k++) dst[k] += src[k];
        }
    }
};

// the input patch of tile (ty, tx): its 5x5 blocks of the image padded by 1 pixel (block b
// holds pixels 2b - 1 and 2b); the output patch: its 4x4 pixels
inline Patch input_patch(int h, int w, int c, int ty, int tx) { return {SPAN, SPAN, h, w, c, 8 * ty - 1, 8 * tx - 1}; }
inline Patch output_patch(int oh, int ow, int c, int ty, int tx) { return {4, 4, oh, ow, c, 4 * ty, 4 * tx}; }

// body(p, n, ty, tx, patch) for each tile p (image n, row ty, column tx) of n_images images, the
// tiles shared among the threads, each thread with a scratch patch of patch_size floats
template <class Body>
inline void each_tile(int n_images, const Tiles& t, size_t patch_size, Body body) {
    const long long P = (long long)n_images * t.count();
    #pragma omp parallel
    {
        std::vector<float> patch(patch_size);
        #pragma omp for
        for (long long p = 0; p < P; p++)
            body(p, (int)(p / t.count()), (int)(p % t.count()) / t.across, (int)(p % t.across), patch.data());
    }
}

// x (N, H, W, C) -> U (P, 25, 4C), P = N x tiles, K index (phase, c); oh, ow: the output's size.
// Each tile's input is first copied row by row (the tile's pixels one phase apart alias in the
// caches, read in place), and its 25 points are written together (25 planes, one matrix each,
// would alias too): the products read each point's matrix with a stride
inline void input_tiles(const float* x, float* u, int n_images, int h, int w, int c_in, int oh, int ow) {
    const long long K = 4LL * c_in;
    each_tile(n_images, Tiles(oh, ow), (size_t)SPAN * SPAN * c_in, [&](long long p, int n, int ty, int tx, float* patch) {
        input_patch(h, w, c_in, ty, tx).read(x, n, patch);
        vec d[25], v[25];
        for (int phase = 0; phase < 4; phase++)
            for (int c0 = 0; c0 < c_in; c0 += CB) {
                const int cn = std::min(CB, c_in - c0);
                for (int a = 0; a < 5; a++)
                    for (int b = 0; b < 5; b++)
                        d[a * 5 + b] = load(&patch[((2 * a + phase / 2) * SPAN + 2 * b + phase % 2) * c_in + c0], cn);
                two_sided<5, 5>(BT, d, v);
                for (int s = 0; s < 25; s++) store(u + (p * 25 + s) * K + phase * c_in + c0, v[s], cn);
            }
    });
}

// the adjoint of input_tiles: U (P, 25, 4C) -> x (N, H, W, C), overlapping tiles summed (one
// task per image, so that no two tasks add to one pixel)
inline void input_tiles_adjoint(const float* u, float* x, int n_images, int h, int w, int c_in, int oh, int ow) {
    const Tiles t(oh, ow);
    const long long K = 4LL * c_in;
    std::fill(x, x + (long long)n_images * h * w * c_in, 0.f);
    #pragma omp parallel
    {
        std::vector<float> patch((size_t)SPAN * SPAN * c_in);
        #pragma omp for
        for (int n = 0; n < n_images; n++)
            for (int tile = 0; tile < t.count(); tile++) {
                const long long p = (long long)n * t.count() + tile;
                vec v[25], d[25];
                for (int phase = 0; phase < 4; phase++)
                    for (int c0 = 0; c0 < c_in; c0 += CB) {
                        const int cn = std::min(CB, c_in - c0);
                        for (int s = 0; s < 25; s++) v[s] = load(u + (p * 25 + s) * K + phase * c_in + c0, cn);
                        two_sided<5, 5>(B, v, d);
                        for (int a = 0; a < 5; a++)   // each pixel of the patch is one phase's one point
                            for (int b = 0; b < 5; b++)
                                store(&patch[((2 * a + phase / 2) * SPAN + 2 * b + phase % 2) * c_in + c0], d[a * 5 + b], cn);
                    }
                input_patch(h, w, c_in, tile / t.across, tile % t.across).add(patch.data(), n, x);
            }
    }
}

// M (P, 25, O) -> y (N, OH, OW, O)
inline void output_tiles(const float* m, float* y, int n_images, int oh, int ow, int c_out) {
    each_tile(n_images, Tiles(oh, ow), (size_t)16 * c_out, [&](long long p, int n, int ty, int tx, float* patch) {
        vec v[25], z[16];
        for (int o0 = 0; o0 < c_out; o0 += CB) {
            const int on = std::min(CB, c_out - o0);
            for (int s = 0; s < 25; s++) v[s] = load(m + (p * 25 + s) * c_out + o0, on);
            two_sided<4, 5>(AT, v, z);
            for (int i = 0; i < 16; i++) store(&patch[i * c_out + o0], z[i], on);
        }
        output_patch(oh, ow, c_out, ty, tx).write(patch, n, y);
    });
}

// the adjoint of output_tiles: y (N, OH, OW, O) -> M (P, 25, O)
inline void output_tiles_adjoint(const float* y, float* m, int n_images, int oh, int ow, int c_out) {
    each_tile(n_images, Tiles(oh, ow), (size_t)16 * c_out, [&](long long p, int n, int ty, int tx, float* patch) {
        output_patch(oh, ow, c_out, ty, tx).read(y, n, patch);
        vec z[16], v[25];
        for (int o0 = 0; o0 < c_out; o0 += CB) {
            const int on = std::min(CB, c_out - o0);
            for (int i = 0; i < 16; i++) z[i] = load(&patch[i * c_out + o0], on);
            two_sided<5, 4>(A, z, v);
            for (int s = 0; s < 25; s++) store(m + (p * 25 + s) * c_out + o0, v[s], on);
        }
    });
}

// the 16 taps of n <= CB 4x4 kernels (kernel j at w + j * stride), each tap a vector over the
// kernels, grouped by phase: taps[phase][a * 2 + b] is tap (2a + py, 2b + px)
inline void read_taps(const float* w, long long stride, int n, vec (&taps)[4][4]) {
    float kernel[CB][16] = {};
    for (int j = 0; j < n; j++) std::memcpy(kernel[j], w + j * stride, sizeof(kernel[j]));
    for (int ky = 0; ky < 4; ky++)
        for (int kx = 0; kx < 4; kx++) {
            vec v;
            for (int j = 0; j < CB; j++) v[j] = kernel[j][ky * 4 + kx];
            taps[(ky % 2) * 2 + kx % 2][(ky / 2) * 2 + kx / 2] = v;
        }
}

// the adjoint of read_taps: taps back to the kernels
inline void write_taps(const vec (&taps)[4][4], float* w, long long stride, int n) {
    for (int j = 0; j < n; j++)
        for (int ky = 0; ky < 4; ky++)
            for (int kx = 0; kx < 4; kx++) w[j * stride + ky * 4 + kx] = taps[(ky % 2) * 2 + kx % 2][(ky / 2) * 2 + kx / 2][j];
}

// where the weights and their tiles lie: w (O, C, 4, 4); W (4C, 25, O), or (O, 25, 4C) where
// transposed (for the products by W's transpose: oneDNN's sgemm runs at half speed on a transposed
// W of many rows). The vector lanes are CB outputs (inputs where transposed), so that the tiles'
// loads and stores are whole vectors; `other` is the input (output) of a block of lanes from l0.
struct WeightLayout {
    int c_out, c_in;
    bool transposed;
    int lanes() const { return transposed ? c_in : c_out; }
    int others() const { return transposed ? c_out : c_in; }
    long long kernel(int other, int l0) const {   // the index in w of the block's first kernel
        return (transposed ? (long long)other * c_in + l0 : (long long)l0 * c_in + other) * 16;
    }
    long long stride() const { return transposed ? 16 : 16LL * c_in; }   // between its kernels
    long long tile(int other, int l0, int phase, int s) const {   // the index in W of point s
        return transposed ? ((long long)other * 25 + s) * 4 * c_in + phase * c_in + l0
                          : ((phase * c_in + other) * 25LL + s) * c_out + l0;
    }
};

// body(other, l0, n) for each block of n <= CB lanes, the blocks shared among the threads
template <class Body>
inline void each_kernel_block(const WeightLayout& at, Body body) {
    const int blocks = (at.lanes() + CB - 1) / CB;
    #pragma omp parallel for collapse(2)
    for (int other = 0; other < at.others(); other++)
        for (int block = 0; block < blocks; block++)
            body(other, block * CB, std::min(CB, at.lanes() - block * CB));
}

// w -> W: each phase's 2x2 taps of the 4x4 kernels, transformed
inline void weight_tiles(const float* w, float* wt, int c_out, int c_in, bool transposed) {
    const WeightLayout at{c_out, c_in, transposed};
    each_kernel_block(at, [&](int other, int l0, int n) {
        vec taps[4][4], v[25];
        read_taps(w + at.kernel(other, l0), at.stride(), n, taps);
        for (int phase = 0; phase < 4; phase++) {
            two_sided<5, 2>(G, taps[phase], v);
            for (int s = 0; s < 25; s++) store(wt + at.tile(other, l0, phase, s), v[s], n);
        }
    });
}

// the adjoint of weight_tiles: W back to w
inline void weight_tiles_adjoint(const float* wt, float* w, int c_out, int c_in, bool transposed) {
    const WeightLayout at{c_out, c_in, transposed};
    each_kernel_block(at, [&](int other, int l0, int n) {
        vec taps[4][4], v[25];
        for (int phase = 0; phase < 4; phase++) {
            for (int s = 0; s < 25; s++) v[s] = load(wt + at.tile(other, l0, phase, s), n);
            two_sided<2, 5>(GT, v, taps[phase]);
        }
        write_taps(taps, w + at.kernel(other, l0), at.stride(), n);
    });
}

// c[:, s] = op(a[:, s]) op(b[:, s]) for each point s: a (RA, S, CA), b (RB, S, CB) and c (M, S, N)
// hold one row-major matrix per point s, rows S x columns apart; op a transpose where asked
inline void products(const float* a, const float* b, float* c, int points, long long ra, long long ca,
                     long long rb, long long cb, bool ta, bool tb) {
    const long long m = ta ? ca : ra, k = ta ? ra : ca, n = tb ? rb : cb;
    for (int s = 0; s < points; s++)
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.f, a + s * ca, points * ca, b + s * cb, points * cb,
                   0.f, c + s * n, points * n);
}
}  // namespace jgan_winograd42
"""

# the C++ call of each map, from in0 to out0, its sizes from the shapes at run time:
# x (N, H, W, C), U (P, 25, 4C), M (P, 25, O), y (N, OH, OW, O), w (O, C, 4, 4), W (4C, 25, O)
_CALLS = {
    "input_tiles": "input_tiles(in0_p, out0_p, in0_shape0, in0_shape1, in0_shape2, in0_shape3, {oh}, {ow});",
    "input_tiles_adjoint": "input_tiles_adjoint(in0_p, out0_p, out0_shape0, out0_shape1, out0_shape2, "
                           "out0_shape3, {oh}, {ow});",
    "output_tiles": "output_tiles(in0_p, out0_p, out0_shape0, out0_shape1, out0_shape2, out0_shape3);",
    "output_tiles_adjoint": "output_tiles_adjoint(in0_p, out0_p, in0_shape0, in0_shape1, in0_shape2, in0_shape3);",
    "weight_tiles": "weight_tiles(in0_p, out0_p, in0_shape0, in0_shape1, false);",
    "weight_tiles_adjoint": "weight_tiles_adjoint(in0_p, out0_p, out0_shape0, out0_shape1, false);",
    "transposed_weight_tiles": "weight_tiles(in0_p, out0_p, in0_shape0, in0_shape1, true);",
    "transposed_weight_tiles_adjoint": "weight_tiles_adjoint(in0_p, out0_p, out0_shape0, out0_shape1, true);",
}

# x, w and y: the shapes (N, H, W, C), (O, C, 4, 4) and (N, OH, OW, O) of one convolution
Geometry = namedtuple("Geometry", "x w y")


def _map(name, a, shape, geometry):
    oh, ow = geometry.y[1:3]
    return jt.code(tuple(shape), "float32", [a], cpu_header=_HEADER,
                   cpu_src="jgan_winograd42::" + _CALLS[name].format(oh=oh, ow=ow))


def _products(a, b, ta=False, tb=False):
    """op(a[:, s]) @ op(b[:, s]) for each point s of (rows, points, columns) a and b, op a transpose
    where ta (tb): (rows, points, columns)."""
    (ra, points, ca), (rb, _, cb) = a.shape, b.shape
    m, n = ca if ta else ra, rb if tb else cb
    return jt.code((m, points, n), "float32", [a, b], cpu_header=_HEADER,
                   cpu_src=f"jgan_winograd42::products(in0_p, in1_p, out0_p, {points}, {ra}, {ca}, {rb}, {cb}, "
                           f"{str(ta).lower()}, {str(tb).lower()});")


def _tile_shapes(geometry):
    """The shapes of U, M and W."""
    count, k, out_channels = tiles(geometry.y, transposed=True), 4 * geometry.x[3], geometry.y[3]
    return (count, POINTS, k), (count, POINTS, out_channels), (k, POINTS, out_channels)


def _by_weights(u, w, geometry):
    """U (P, 25, 4C) by the weights' tiles: M (P, 25, O)."""
    return _products(u, _map("weight_tiles", w, _tile_shapes(geometry)[2], geometry))


def _by_transposed_weights(m, w, geometry):
    """M (P, 25, O) by the transpose of the weights' tiles: U (P, 25, 4C); with few tiles and many
    rows of W, by W laid out transposed (oneDNN multiplies by a transposed W of many rows at half
    speed)."""
    (count, _, k), _, (_, _, out_channels) = _tile_shapes(geometry)
    if 4 * count <= k:
        return _products(m, _map("transposed_weight_tiles", w, (out_channels, POINTS, k), geometry))
    return _products(m, _map("weight_tiles", w, (k, POINTS, out_channels), geometry), tb=True)


def _forward(x, w, geometry):
    """y of a convolution from (x, w)."""
    u = _map("input_tiles", x, _tile_shapes(geometry)[0], geometry)
    return _map("output_tiles", _by_weights(u, w, geometry), geometry.y, geometry)


def _backward_data(y, w, geometry):
    """x of a convolution from (y, w) (the transposed convolution)."""
    m = _map("output_tiles_adjoint", y, _tile_shapes(geometry)[1], geometry)
    return _map("input_tiles_adjoint", _by_transposed_weights(m, w, geometry), geometry.x, geometry)


def _weights_from_tiles(u, m, geometry):
    return _map("weight_tiles_adjoint", _products(u, m, ta=True), geometry.w, geometry)


def _backward_weights(x, y, geometry):
    """w of a convolution from (x, y) (its weight gradient)."""
    u_shape, m_shape, _ = _tile_shapes(geometry)
    return _weights_from_tiles(_map("input_tiles", x, u_shape, geometry),
                               _map("output_tiles_adjoint", y, m_shape, geometry), geometry)


_COMPUTE = {"forward": _forward, "backward_data": _backward_data, "backward_weights": _backward_weights}


def _gradients(kind, geometry, g, a, b):
    """Both gradients of `forward` (of x and w from y's) or `backward_data` (of y and w from x's),
    sharing the tiles of g."""
    u_shape, m_shape, _ = _tile_shapes(geometry)
    if kind == "forward":   # a = x, b = w
        m = _map("output_tiles_adjoint", g, m_shape, geometry)
        return (_map("input_tiles_adjoint", _by_transposed_weights(m, b, geometry), geometry.x, geometry),
                _weights_from_tiles(_map("input_tiles", a, u_shape, geometry), m, geometry))
    u = _map("input_tiles", g, u_shape, geometry)   # backward_data: a = y, b = w
    return (_map("output_tiles", _by_weights(u, b, geometry), geometry.y, geometry),
            _weights_from_tiles(u, _map("output_tiles_adjoint", a, m_shape, geometry), geometry))


# the gradients of each computation r = kind(a, b), bilinear in a and b, from the gradient g of
# r: (gradient of a, gradient of b) = (kind_a(p, q), kind_b(s, t)), p, q, s, t named here
_GRADIENTS = {"forward": (("backward_data", "g", "b"), ("backward_weights", "a", "g")),    # y = conv(x, w)
              "backward_data": (("forward", "g", "b"), ("backward_weights", "g", "a")),    # x = conv^T(y, w)
              "backward_weights": (("backward_data", "b", "g"), ("forward", "a", "g"))}    # w from (x, y)


def _gradients_apart(kind, geometry, g, a, b):
    """(gradient of a, gradient of b) of kind(a, b), each its own differentiable computation."""
    named = {"a": a, "b": b, "g": g}
    return tuple(_apply(other, geometry, named[first], named[second]) for other, first, second in _GRADIENTS[kind])


class _Convolution(Function):
    """One of the three computations of a convolution of x by w into y: `forward` (y from x, w),
    `backward_data` (x from y, w: the transposed convolution) and `backward_weights` (w from x, y).
    Each keeps nothing of Winograd's domain for its gradients (the tiles of x are 1.56 times x,
    the weights' 6.25 times w): those are the other two computations, which transform again. The
    gradients use the caller's a and b (not the taped copies execute receives), so that a second
    differentiation reaches them."""

    def __init__(self, kind, geometry, a, b):
        self.kind, self.geometry, self.a, self.b = kind, geometry, a, b

    def execute(self, a, b):
        return _COMPUTE[self.kind](a, b, self.geometry)

    def grad(self, g):
        if self.kind == "backward_weights":   # met only in a second differentiation
            return _gradients_apart(self.kind, self.geometry, g, self.a, self.b)
        return _Gradients(self.kind, self.geometry, g, self.a, self.b)(g, self.a, self.b)


class _Gradients(Function):
    """Both gradients of a `forward` or `backward_data` computation at once, sharing one transform of
    g (the result's gradient). Each gradient is a computation bilinear in two of (g, a, b), so
    the gradients of this pair are again the three computations (for the WGAN-GP and R1
    penalties)."""

    def __init__(self, kind, geometry, g, a, b):
        self.kind, self.geometry, self.named = kind, geometry, {"g": g, "a": a, "b": b}

    def execute(self, g, a, b):
        return _gradients(self.kind, self.geometry, g, a, b)

    def grad(self, *upstream):
        total = {"g": None, "a": None, "b": None}
        for upstream_of_one, (kind, first, second) in zip(upstream, _GRADIENTS[self.kind]):
            if upstream_of_one is None:
                continue
            terms = _gradients_apart(kind, self.geometry, upstream_of_one, self.named[first], self.named[second])
            for name, term in zip((first, second), terms):
                total[name] = term if total[name] is None else total[name] + term
        return total["g"], total["a"], total["b"]


def _apply(kind, geometry, a, b):
    return _Convolution(kind, geometry, a, b)(a, b)


def conv2d(x, weight, bias=None):
    """The convolution of (N, H, W, C) x by (O, C, 4, 4) weights with stride 2 and padding 1, by
    F(4x4, 2x2): (N, H/2, W/2, O)."""
    n, h, w, _ = x.shape
    geometry = Geometry(tuple(x.shape), tuple(weight.shape), (n, h // 2, w // 2, weight.shape[0]))
    return onednn_conv.with_bias(_apply("forward", geometry, x, weight), bias, channels_last=True)


def conv_transpose2d(x, weight, bias=None):
    """The transpose of conv2d (its data gradient) on (N, H, W, C) x with (C, O, 4, 4) weights
    (Jittor's layout of a transposed convolution's): (N, 2H, 2W, O)."""
    n, h, w, _ = x.shape
    geometry = Geometry((n, 2 * h, 2 * w, weight.shape[1]), tuple(weight.shape), tuple(x.shape))
    return onednn_conv.with_bias(_apply("backward_data", geometry, x, weight), bias, channels_last=True)


def supported():
    """Whether these convolutions can run here: wherever the DCGAN family's nets run channels-last
    (on the CPU with oneDNN, whose sgemm they call)."""
    return onednn_conv.channels_last_available()


def enable(on):
    """Let `takes` accept the convolutions it fits (True), or none (False)."""
    _state["enabled"] = bool(on)


def enabled():
    return _state["enabled"]


def tiles(x_shape, transposed=False):
    """The 4x4 output tiles (of the convolution, whose output is the transposed one's input) of all
    images of a channels-last (N, H, W, C) input."""
    n, h, w, _ = x_shape
    out_h, out_w = (h, w) if transposed else (h // 2, w // 2)
    return n * -(-out_h // TILE) * -(-out_w // TILE)


def takes(x, weight, stride, padding, output_padding=0, transposed=False):
    """Whether a 4x4 convolution (or transposed one) of stride 2, padding 1 on channels-last x with
    these weights runs here: while enabled, on the CPU, float32, both sides FEWEST_CHANNELS or more,
    FEWEST_TILES or more."""
    return (enabled() and not jt.flags.use_cuda and x.dtype == "float32" and weight.dtype == "float32"
            and tuple(weight.shape[2:]) == (4, 4) and pair(stride) == (2, 2) and pair(padding) == (1, 1)
            and pair(output_padding) == (0, 0) and min(weight.shape[:2]) >= FEWEST_CHANNELS
            and tiles(x.shape, transposed) >= FEWEST_TILES)
