/*
 * tg_runtime.h -- the inference runtime as the validation app sees it.
 *
 * Implemented once per runtime: tg_runtime_tflm.cc (TFLM) or the compiled
 * runtime (emitted tg_model.c over the kernels of tg_kernels.h). The app calls
 * tg_runtime_init once, then tg_runtime_invoke once per INFER request.
 */
#ifndef TG_RUNTIME_H
#define TG_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Set the runtime up (arena, model, tensors). Returns 0, or a TG_STATUS_*
 * code from tg_protocol.h (e.g. TG_STATUS_ALLOC_FAILED when the arena is too
 * small, TG_STATUS_UNSUPPORTED_OP, TG_STATUS_RUNTIME_INIT_FAILED). */
int tg_runtime_init(void);

/* Short ASCII name: "tflm" | "compiled" (at most 16 characters are sent). */
const char *tg_runtime_name(void);

/* Arena bytes in use (after tg_runtime_init); 0 if the runtime has none. */
uint32_t tg_runtime_arena_bytes(void);

/* Run the model once. in: TG_INPUT_BYTES int8 values, out: TG_OUTPUT_BYTES
 * int8 values (both row-major, as in tg_model_info.h). Returns 0 on success,
 * anything else on failure (reported to the host as TG_STATUS_INVOKE_FAILED
 * with the returned value). */
int tg_runtime_invoke(const int8_t *in, int8_t *out);

/* Called after every operator of the model during tg_runtime_invoke, in execution order:
 * op is the model's operator index, output the tensor that operator wrote (bytes long), valid
 * only during the call. The validation app streams it (LAYERS) or times it (PROFILE). */
typedef void (*tg_runtime_op_hook_t)(void *ctx, uint32_t op, const void *output, uint32_t bytes);

/* Install hook (NULL: none) for the following invokes. Returns 0, or non-zero when this runtime
 * cannot report per-op results (then LAYERS / PROFILE answer TG_STATUS_NO_OP_HOOK). */
int tg_runtime_set_op_hook(tg_runtime_op_hook_t hook, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* TG_RUNTIME_H */
