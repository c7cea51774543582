/*
 * Kernels of the generated "colour" test models, built with `cc -shared -fPIC`.
 *
 * Each exported function is a TVM packed function as the graph executor in libdlr calls it:
 * args[i].v_handle is a DLTensor*, the node's inputs in order and then its output. The graph
 * mirrors the Greengrass ModelStore ResNet-50's outer contract: raw 0..255 pixels in, the
 * first kernel normalises ((x - mean) / std) and lays the image out as NCHW, the last kernel is
 * a dense layer with bias producing logits. In between, a global average pool reduces the image
 * to its mean colour, so the answer is predictable from the image. Sums run in double so that
 * expected logits can be computed exactly by the tests.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Guarded here too: in KERNEL_SOURCE the header is already prepended and there is no file to
 * include. */
#ifndef PACKED_FUNC_H
#include "packed_func.h"
#endif

/* in: [1,H,W,3] pixels, mean: [3], std: [3] -> out: [1,3,H,W] float32 */
#define NORMALIZE_NHWC(name, pixel_t)                                          \
  KERNEL(name) {                                                               \
    UNUSED_KERNEL_ARGS;                                                        \
    if (num_args != 4) return -1;                                              \
    const DLTensor *in = tensor(args, 0);                                      \
    if (in->ndim != 4 || in->shape[3] != 3) return -1;                         \
    const int64_t hw = in->shape[1] * in->shape[2];                            \
    const pixel_t *src = (const pixel_t *)data_of(in);                         \
    const float *mean = (const float *)data_of(tensor(args, 1));               \
    const float *std = (const float *)data_of(tensor(args, 2));                \
    float *out = (float *)data_of(tensor(args, 3));                            \
    for (int64_t p = 0; p < hw; p++)                                           \
      for (int c = 0; c < 3; c++)                                              \
        out[c * hw + p] = ((float)src[p * 3 + c] - mean[c]) / std[c];          \
    return 0;                                                                  \
  }

NORMALIZE_NHWC(colour_normalize_nhwc_f32, float)
NORMALIZE_NHWC(colour_normalize_nhwc_u8, uint8_t)

/* in: [1,3,H,W] float32, mean: [3], std: [3] -> out: [1,3,H,W] float32 */
KERNEL(colour_normalize_nchw_f32) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 4) return -1;
  const DLTensor *in = tensor(args, 0);
  if (in->ndim != 4 || in->shape[1] != 3) return -1;
  const int64_t hw = in->shape[2] * in->shape[3];
  const float *src = (const float *)data_of(in);
  const float *mean = (const float *)data_of(tensor(args, 1));
  const float *std = (const float *)data_of(tensor(args, 2));
  float *out = (float *)data_of(tensor(args, 3));
  for (int c = 0; c < 3; c++)
    for (int64_t p = 0; p < hw; p++)
      out[c * hw + p] = (src[c * hw + p] - mean[c]) / std[c];
  return 0;
}

/*
 * The compute-heavy step: `passes` rounds of a 3x3 box blur with clamped edges.
 * in: [1,3,H,W] float32, passes: [1] int32 -> out: [1,3,H,W] float32.
 * A uniform image stays uniform, so the heavy model answers like the light one.
 */
KERNEL(colour_box_blur) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 3) return -1;
  const DLTensor *in = tensor(args, 0);
  if (in->ndim != 4) return -1;
  const int64_t channels = in->shape[1], h = in->shape[2], w = in->shape[3];
  const int64_t n = channels * h * w;
  const int32_t passes = *(const int32_t *)data_of(tensor(args, 1));
  float *out = (float *)data_of(tensor(args, 2));
  float *scratch = (float *)malloc((size_t)n * sizeof(float));
  if (scratch == NULL) return -1;
  memcpy(out, data_of(in), (size_t)n * sizeof(float));
  for (int32_t pass = 0; pass < passes; pass++) {
    memcpy(scratch, out, (size_t)n * sizeof(float));
    for (int64_t c = 0; c < channels; c++) {
      const float *s = scratch + c * h * w;
      float *d = out + c * h * w;
      for (int64_t y = 0; y < h; y++) {
        const int64_t y0 = y > 0 ? y - 1 : 0, y1 = y + 1 < h ? y + 1 : h - 1;
        for (int64_t x = 0; x < w; x++) {
          const int64_t x0 = x > 0 ? x - 1 : 0, x1 = x + 1 < w ? x + 1 : w - 1;
          const float sum = s[y0 * w + x0] + s[y0 * w + x] + s[y0 * w + x1] +
                            s[y * w + x0] + s[y * w + x] + s[y * w + x1] +
                            s[y1 * w + x0] + s[y1 * w + x] + s[y1 * w + x1];
          d[y * w + x] = sum / 9.0f;
        }
      }
    }
  }
  free(scratch);
  return 0;
}

/* in: [1,3,H,W] float32 -> out: [1,3] float32, the mean of each channel */
KERNEL(colour_mean_pool) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 2) return -1;
  const DLTensor *in = tensor(args, 0);
  if (in->ndim != 4 || in->shape[1] != 3) return -1;
  const int64_t hw = in->shape[2] * in->shape[3];
  const float *src = (const float *)data_of(in);
  float *out = (float *)data_of(tensor(args, 1));
  for (int c = 0; c < 3; c++) {
    double sum = 0.0;
    for (int64_t p = 0; p < hw; p++) sum += src[c * hw + p];
    out[c] = (float)(sum / (double)hw);
  }
  return 0;
}

/* in: [1,3], weight: [N,3], bias: [N] -> out: [1,N] float32 logits */
KERNEL(colour_dense) {
  UNUSED_KERNEL_ARGS;
  if (num_args != 4) return -1;
  const float *in = (const float *)data_of(tensor(args, 0));
  const DLTensor *weight = tensor(args, 1);
  if (weight->ndim != 2 || weight->shape[1] != 3) return -1;
  const int64_t classes = weight->shape[0];
  const float *w = (const float *)data_of(weight);
  const float *b = (const float *)data_of(tensor(args, 2));
  float *out = (float *)data_of(tensor(args, 3));
  for (int64_t k = 0; k < classes; k++) {
    double acc = (double)b[k];
    for (int c = 0; c < 3; c++) acc += (double)w[k * 3 + c] * (double)in[c];
    out[k] = (float)acc;
  }
  return 0;
}
