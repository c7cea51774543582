/*
 * The gate kernel of the generated "gated" test model: lets a test hold a model worker inside
 * a real libdlr run for as long as it likes, so that "the queue is full" or "a request is in
 * flight" is a fact the test created, not a timing guess.
 *
 * While a file named `gate-closed` exists in the model directory (the directory this library
 * was loaded from), the kernel creates `gate-held` there, waits until `gate-closed` is gone,
 * then removes `gate-held` and passes its input through unchanged. Each test copies the model
 * into its own temporary directory, so parallel tests have separate gates.
 *
 * in: [1,3] float32 -> out: [1,3] float32 (identity).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef union {
  int64_t v_int64;
  double v_float64;
  void *v_handle;
  const char *v_str;
} GateValue;

typedef struct {
  void *data;
  int32_t device[2];
  int32_t ndim;
  uint8_t dtype[4];
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} GateTensor;

int colour_gate(GateValue *args, int *type_codes, int num_args, GateValue *ret,
                int *ret_type_code, void *resource);

/* `<directory of this library>/<name>` into `out`; 0 on success. */
static int sibling(const char *name, char *out, size_t size) {
  Dl_info info;
  if (dladdr((void *)colour_gate, &info) == 0 || info.dli_fname == NULL) return -1;
  const char *slash = strrchr(info.dli_fname, '/');
  int dir_len = slash ? (int)(slash - info.dli_fname) : 1;
  const char *dir = slash ? info.dli_fname : ".";
  int n = snprintf(out, size, "%.*s/%s", dir_len, dir, name);
  return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

int colour_gate(GateValue *args, int *type_codes, int num_args, GateValue *ret,
                int *ret_type_code, void *resource) {
  (void)type_codes;
  (void)ret;
  (void)ret_type_code;
  (void)resource;
  if (num_args != 2) return -1;
  char closed[PATH_MAX], held[PATH_MAX];
  if (sibling("gate-closed", closed, sizeof closed) != 0) return -1;
  if (sibling("gate-held", held, sizeof held) != 0) return -1;
  if (access(closed, F_OK) == 0) {
    int fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
    const struct timespec pause = {0, 1000000};
    while (access(closed, F_OK) == 0) nanosleep(&pause, NULL);
    unlink(held);
  }
  const GateTensor *in = (const GateTensor *)args[0].v_handle;
  const GateTensor *out = (const GateTensor *)args[1].v_handle;
  memcpy((char *)out->data + out->byte_offset, (const char *)in->data + in->byte_offset,
         3 * sizeof(float));
  return 0;
}
