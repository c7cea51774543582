/*
 * Kernels of the generated EfficientNet-Lite0 DLR model, built with `cc -O3 -shared -fPIC`.
 *
 * Each exported function is a TVM packed function as libdlr's graph executor calls it:
 * args[i].v_handle is a DLTensor*, the node's inputs in order and then its output. Every
 * tensor is float32, compact, NHWC with batch 1. Batch norm is folded into the weights and a
 * bias by the generator, so a layer is "convolution + bias (+ ReLU6)".
 *
 * Shapes carry everything a kernel needs: the kernel size comes from the weight's shape, the
 * stride from the input/output ratio, and the padding is TensorFlow's SAME (output =
 * ceil(input / stride), any odd padding pixel at the bottom/right), which is what these
 * weights were trained with. Kernels check the shapes they rely on and return -1 otherwise.
 *
 * Performance: NHWC puts channels innermost, so every inner loop runs over contiguous
 * channels and the compiler vectorises it. The 1x1 convolutions (most of the work) are a
 * matrix product computed in register tiles of ROWS pixels x COLS output channels. On x86-64
 * the hot functions are also compiled for x86-64-v3 (AVX2, FMA) and picked at load time, so
 * one library runs on any x86-64 and fast on most.
 */
#include <stdint.h>
#include <string.h>

#include "../kernels/packed_func.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT
#endif

static float *floats(TVMValue *args, int i) {
  return (float *)data_of(tensor(args, i));
}

static int is_f32(const DLTensor *t) {
  return t->dtype.code == 2 && t->dtype.bits == 32 && t->dtype.lanes == 1 &&
         t->strides == NULL;
}

/* An NHWC float32 tensor of batch 1. */
typedef struct {
  int64_t h, w, c;
} Hwc;

static int hwc_of(const DLTensor *t, Hwc *out) {
  if (!is_f32(t) || t->ndim != 4 || t->shape[0] != 1) return -1;
  out->h = t->shape[1];
  out->w = t->shape[2];
  out->c = t->shape[3];
  return 0;
}

static float relu6(float x) { return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x); }

/* SAME padding before the first row/column for one spatial dimension. */
static int same_geometry(int64_t in, int64_t out, int64_t k, int64_t *stride,
                         int64_t *pad) {
  if (out <= 0 || in % out != 0) return -1;
  *stride = in / out;
  int64_t total = (out - 1) * *stride + k - in;
  *pad = total > 0 ? total / 2 : 0;
  return 0;
}

/* data [1,H,W,3] raw 0..255 -> [1,H,W,3] (x - 127) / 128, the network's input scaling. */
KERNEL(effnet_normalize) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 2) return -1;
  Hwc in, out;
  if (hwc_of(tensor(args, 0), &in) || hwc_of(tensor(args, 1), &out)) return -1;
  if (memcmp(&in, &out, sizeof in) != 0) return -1;
  const float *x = floats(args, 0);
  float *y = floats(args, 1);
  for (int64_t i = 0, n = in.h * in.w * in.c; i < n; i++)
    y[i] = (x[i] - 127.0f) / 128.0f;
  return 0;
}

/*
 * Full convolution (the stem): in [1,H,W,Ci], weight [K,K,Ci,Co], bias [Co]
 * -> out [1,OH,OW,Co], ReLU6.
 */
HOT static void conv2d(const float *x, Hwc in, const float *wt, const float *b,
                       int64_t k, float *y, Hwc out, int64_t stride,
                       int64_t pad_y, int64_t pad_x) {
  for (int64_t oy = 0; oy < out.h; oy++) {
    for (int64_t ox = 0; ox < out.w; ox++) {
      float *acc = y + (oy * out.w + ox) * out.c;
      for (int64_t co = 0; co < out.c; co++) acc[co] = b[co];
      for (int64_t ky = 0; ky < k; ky++) {
        int64_t iy = oy * stride + ky - pad_y;
        if (iy < 0 || iy >= in.h) continue;
        for (int64_t kx = 0; kx < k; kx++) {
          int64_t ix = ox * stride + kx - pad_x;
          if (ix < 0 || ix >= in.w) continue;
          const float *px = x + (iy * in.w + ix) * in.c;
          const float *wk = wt + (ky * k + kx) * in.c * out.c;
          for (int64_t ci = 0; ci < in.c; ci++) {
            const float a = px[ci];
            const float *wrow = wk + ci * out.c;
            for (int64_t co = 0; co < out.c; co++) acc[co] += a * wrow[co];
          }
        }
      }
      for (int64_t co = 0; co < out.c; co++) acc[co] = relu6(acc[co]);
    }
  }
}

KERNEL(effnet_conv2d_relu6) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 4) return -1;
  Hwc in, out;
  const DLTensor *w = tensor(args, 1);
  if (hwc_of(tensor(args, 0), &in) || hwc_of(tensor(args, 3), &out)) return -1;
  if (!is_f32(w) || w->ndim != 4 || w->shape[0] != w->shape[1] ||
      w->shape[2] != in.c || w->shape[3] != out.c)
    return -1;
  int64_t k = w->shape[0], sy, sx, py, px;
  if (same_geometry(in.h, out.h, k, &sy, &py) ||
      same_geometry(in.w, out.w, k, &sx, &px) || sy != sx)
    return -1;
  conv2d(floats(args, 0), in, floats(args, 1), floats(args, 2), k,
         floats(args, 3), out, sy, py, px);
  return 0;
}

/*
 * Depthwise convolution: in [1,H,W,C], weight [K,K,C], bias [C] -> out [1,OH,OW,C], ReLU6.
 * Vectorised over the channels of one output pixel.
 */
HOT static void depthwise(const float *x, Hwc in, const float *wt,
                          const float *b, int64_t k, float *y, Hwc out,
                          int64_t stride, int64_t pad_y, int64_t pad_x) {
  const int64_t c = in.c;
  for (int64_t oy = 0; oy < out.h; oy++) {
    for (int64_t ox = 0; ox < out.w; ox++) {
      float *acc = y + (oy * out.w + ox) * c;
      for (int64_t ch = 0; ch < c; ch++) acc[ch] = b[ch];
      for (int64_t ky = 0; ky < k; ky++) {
        int64_t iy = oy * stride + ky - pad_y;
        if (iy < 0 || iy >= in.h) continue;
        for (int64_t kx = 0; kx < k; kx++) {
          int64_t ix = ox * stride + kx - pad_x;
          if (ix < 0 || ix >= in.w) continue;
          const float *px = x + (iy * in.w + ix) * c;
          const float *wk = wt + (ky * k + kx) * c;
          for (int64_t ch = 0; ch < c; ch++) acc[ch] += px[ch] * wk[ch];
        }
      }
      for (int64_t ch = 0; ch < c; ch++) acc[ch] = relu6(acc[ch]);
    }
  }
}

KERNEL(effnet_depthwise_relu6) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 4) return -1;
  Hwc in, out;
  const DLTensor *w = tensor(args, 1);
  if (hwc_of(tensor(args, 0), &in) || hwc_of(tensor(args, 3), &out)) return -1;
  if (!is_f32(w) || w->ndim != 3 || w->shape[0] != w->shape[1] ||
      w->shape[2] != in.c || out.c != in.c)
    return -1;
  int64_t k = w->shape[0], sy, sx, py, px;
  if (same_geometry(in.h, out.h, k, &sy, &py) ||
      same_geometry(in.w, out.w, k, &sx, &px) || sy != sx)
    return -1;
  depthwise(floats(args, 0), in, floats(args, 1), floats(args, 2), k,
            floats(args, 3), out, sy, py, px);
  return 0;
}

/*
 * 1x1 convolution, a matrix product: out[p][co] = b[co] + sum_ci x[p][ci] * w[ci][co].
 * Tiles of ROWS pixels x (8 * vecs) channels are accumulated in vectors that stay in
 * registers, so each weight row loaded from cache serves ROWS pixels. GCC's generic vector
 * type is lowered to whatever the target has (AVX: one register, SSE: two); written plainly,
 * the compiler vectorises the reduction loop instead and spills the tile.
 */
typedef float v8 __attribute__((vector_size(32)));
#define ROWS 6

/* Unaligned vector load and store (memcpy compiles to one instruction). */
#define LOAD8(v, p) memcpy(&(v), (p), sizeof(v8))
#define STORE8(p, v) memcpy((p), &(v), sizeof(v8))

/* One tile: ROWS pixels from x (row stride ci_n) times weight columns [co, co + 8 * vecs). */
static inline __attribute__((always_inline)) void
tile(const float *x, int64_t ci_n, const float *wt, const float *b,
     int64_t co_n, int64_t co, int vecs, float *y, int clamp) {
  v8 acc[ROWS][2];
  for (int v = 0; v < vecs; v++) {
    v8 bias;
    LOAD8(bias, b + co + 8 * v);
    for (int r = 0; r < ROWS; r++) acc[r][v] = bias;
  }
  for (int64_t ci = 0; ci < ci_n; ci++) {
    const float *wrow = wt + ci * co_n + co;
    v8 w0, w1;
    LOAD8(w0, wrow);
    if (vecs > 1) LOAD8(w1, wrow + 8);
    for (int r = 0; r < ROWS; r++) {
      const float a = x[r * ci_n + ci];
      acc[r][0] += a * w0;
      if (vecs > 1) acc[r][1] += a * w1;
    }
  }
  for (int r = 0; r < ROWS; r++) {
    float *out = y + r * co_n + co;
    for (int v = 0; v < vecs; v++) STORE8(out + 8 * v, acc[r][v]);
    if (clamp)
      for (int j = 0; j < 8 * vecs; j++) out[j] = relu6(out[j]);
  }
}

HOT static void pointwise(const float *x, int64_t pixels, int64_t ci_n,
                          const float *wt, const float *b, int64_t co_n,
                          float *y, int clamp) {
  int64_t p = 0;
  if (co_n % 8 == 0) {
    for (; p + ROWS <= pixels; p += ROWS) {
      const float *xr = x + p * ci_n;
      float *yr = y + p * co_n;
      int64_t co = 0;
      for (; co + 16 <= co_n; co += 16) tile(xr, ci_n, wt, b, co_n, co, 2, yr, clamp);
      for (; co < co_n; co += 8) tile(xr, ci_n, wt, b, co_n, co, 1, yr, clamp);
    }
  }
  /* The last few pixels (and any odd channel count): one pixel at a time. */
  for (; p < pixels; p++) {
    float *acc = y + p * co_n;
    for (int64_t co = 0; co < co_n; co++) acc[co] = b[co];
    for (int64_t ci = 0; ci < ci_n; ci++) {
      const float a = x[p * ci_n + ci];
      const float *wrow = wt + ci * co_n;
      for (int64_t co = 0; co < co_n; co++) acc[co] += a * wrow[co];
    }
    if (clamp)
      for (int64_t co = 0; co < co_n; co++) acc[co] = relu6(acc[co]);
  }
}

/* in [1,H,W,Ci], weight [Ci,Co], bias [Co] -> out [1,H,W,Co]. */
static int pointwise_kernel(TVMValue *args, int num_args, int clamp) {
  if (num_args != 4) return -1;
  Hwc in, out;
  const DLTensor *w = tensor(args, 1);
  if (hwc_of(tensor(args, 0), &in) || hwc_of(tensor(args, 3), &out)) return -1;
  if (!is_f32(w) || w->ndim != 2 || w->shape[0] != in.c ||
      w->shape[1] != out.c || in.h != out.h || in.w != out.w)
    return -1;
  pointwise(floats(args, 0), in.h * in.w, in.c, floats(args, 1),
            floats(args, 2), out.c, floats(args, 3), clamp);
  return 0;
}

KERNEL(effnet_pointwise_relu6) {
  UNUSED_KERNEL_ARGS;
  return pointwise_kernel(args, num_args, 1);
}

/* The linear bottleneck (projection): no activation. */
KERNEL(effnet_pointwise) {
  UNUSED_KERNEL_ARGS;
  return pointwise_kernel(args, num_args, 0);
}

/* Residual connection: a + b, same shape. */
KERNEL(effnet_add) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 3) return -1;
  Hwc a, b, out;
  if (hwc_of(tensor(args, 0), &a) || hwc_of(tensor(args, 1), &b) ||
      hwc_of(tensor(args, 2), &out))
    return -1;
  if (memcmp(&a, &b, sizeof a) != 0 || memcmp(&a, &out, sizeof a) != 0)
    return -1;
  const float *x = floats(args, 0), *z = floats(args, 1);
  float *y = floats(args, 2);
  for (int64_t i = 0, n = a.h * a.w * a.c; i < n; i++) y[i] = x[i] + z[i];
  return 0;
}

/* Global average pool: [1,H,W,C] -> [1,C]. */
KERNEL(effnet_mean_pool) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 2) return -1;
  Hwc in;
  const DLTensor *o = tensor(args, 1);
  if (hwc_of(tensor(args, 0), &in)) return -1;
  if (!is_f32(o) || o->ndim != 2 || o->shape[0] != 1 || o->shape[1] != in.c)
    return -1;
  const float *x = floats(args, 0);
  float *y = floats(args, 1);
  for (int64_t ch = 0; ch < in.c; ch++) y[ch] = 0.0f;
  for (int64_t p = 0; p < in.h * in.w; p++)
    for (int64_t ch = 0; ch < in.c; ch++) y[ch] += x[p * in.c + ch];
  for (int64_t ch = 0; ch < in.c; ch++) y[ch] /= (float)(in.h * in.w);
  return 0;
}

/* Classifier: in [1,Ci], weight [Ci,Co], bias [Co] -> logits [1,Co]. */
KERNEL(effnet_dense) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 4) return -1;
  const DLTensor *in = tensor(args, 0), *w = tensor(args, 1),
                 *b = tensor(args, 2), *o = tensor(args, 3);
  if (!is_f32(in) || !is_f32(w) || !is_f32(b) || !is_f32(o) || in->ndim != 2 ||
      w->ndim != 2 || o->ndim != 2 || w->shape[0] != in->shape[1] ||
      w->shape[1] != o->shape[1] || b->ndim != 1 || b->shape[0] != o->shape[1])
    return -1;
  pointwise(floats(args, 0), 1, in->shape[1], floats(args, 1), floats(args, 2),
            o->shape[1], floats(args, 3), 0);
  return 0;
}
