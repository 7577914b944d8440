/*
 * tinygen_model_runtime.h -- internal to the tinygen_model library: what
 * tinygen_model.c needs from the runtime underneath it.
 *
 * One implementation per runtime, in the library next to the model:
 * tinygen_model_compiled.c (tinygen's compiled C, emitted tg_model.c over the
 * kernels) or tg_runtime_tflm.cc (the TFLM interpreter). Programs include
 * tinygen_model.h, never this header.
 */
#ifndef TINYGEN_MODEL_RUNTIME_H
#define TINYGEN_MODEL_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* TINYGEN_MODEL_OK or a TINYGEN_MODEL_ERR_* code (tinygen_model.h). */
int tinygen_model_rt_init(void);

/* in: TINYGEN_MODEL_INPUT_COUNT int8, out: TINYGEN_MODEL_OUTPUT_COUNT int8.
 * 0 on success, anything else on failure. Only called after a successful init. */
int tinygen_model_rt_invoke(const int8_t *in, int8_t *out);

/* Arena bytes in use (0 before init when the runtime allocates at init). */
uint32_t tinygen_model_rt_arena_bytes(void);

/* Per-op access for the validation firmware (tg_runtime.h's tg_runtime_op_hook_t, same shape):
 * hook(ctx, op index, output tensor, bytes) after every operator of the following invokes.
 * 0, or non-zero when the runtime cannot. Programs never need it. */
typedef void (*tinygen_model_rt_op_hook_t)(void *ctx, uint32_t op, const void *output, uint32_t bytes);
int tinygen_model_rt_set_op_hook(tinygen_model_rt_op_hook_t hook, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* TINYGEN_MODEL_RUNTIME_H */
