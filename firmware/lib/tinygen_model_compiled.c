/*
 * tinygen_model_compiled.c -- the tinygen_model library's runtime on
 * tinygen's compiled C: the model is tg_model.c (emitted per model) over the
 * kernels of tg_kernels.h. Nothing to set up, no interpreter, a static arena.
 */
#include <stdint.h>

#include "tg_model.h"
#include "tinygen_model.h"
#include "tinygen_model_runtime.h"

#if TG_CM_INPUT_BYTES != TINYGEN_MODEL_INPUT_COUNT || TG_CM_OUTPUT_BYTES != TINYGEN_MODEL_OUTPUT_COUNT
#error "tg_model.h and tinygen_model.h describe different models"
#endif

int tinygen_model_rt_init(void) { return TINYGEN_MODEL_OK; }

int tinygen_model_rt_invoke(const int8_t *in, int8_t *out) { return tg_invoke(in, out); }

uint32_t tinygen_model_rt_arena_bytes(void) { return (uint32_t)TG_CM_ARENA_BYTES; }

int tinygen_model_rt_set_op_hook(tinygen_model_rt_op_hook_t hook, void *ctx)
{
    tg_set_op_hook(hook, ctx);
    return 0;
}
