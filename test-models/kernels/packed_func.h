/*
 * The TVM packed-function ABI as libdlr's graph executor calls a model's kernels: the C types
 * (TVMValue, DLPack's DLTensor) and the signature, shared by every kernel library the test
 * models build (`kernels/colour.c`, `efficientnet/kernels.c`).
 *
 * A kernel is `int f(TVMValue *args, int *type_codes, int num_args, TVMValue *ret,
 * int *ret_type_code, void *resource)`, exported under the graph node's `func_name`; it
 * returns 0 on success. args[i].v_handle is a DLTensor*: the node's inputs in order, then its
 * outputs. The layouts below are DLPack's (DLDevice was called DLContext in older DLPack).
 *
 * colour.c is also handed out as one self-contained source (`dlr_test_models::KERNEL_SOURCE`,
 * this header prepended), so it includes this header behind the guard below.
 */
#ifndef PACKED_FUNC_H
#define PACKED_FUNC_H

#include <stdint.h>

typedef union {
  int64_t v_int64;
  double v_float64;
  void *v_handle;
  const char *v_str;
} TVMValue;

typedef struct {
  int32_t device_type;
  int32_t device_id;
} DLDevice;

typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;

typedef struct {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} DLTensor;

#define KERNEL(name)                                                           \
  int name(TVMValue *args, int *type_codes, int num_args, TVMValue *ret,       \
           int *ret_type_code, void *resource)

/* The parameters a kernel that only reads and writes tensors ignores. */
#define UNUSED_KERNEL_ARGS                                                     \
  (void)type_codes;                                                            \
  (void)ret;                                                                   \
  (void)ret_type_code;                                                         \
  (void)resource

static inline DLTensor *tensor(TVMValue *args, int i) {
  return (DLTensor *)args[i].v_handle;
}

/* The first element of a tensor. */
static inline void *data_of(const DLTensor *t) {
  return (char *)t->data + t->byte_offset;
}

#endif /* PACKED_FUNC_H */
