/*
 * tg_runtime_lib.c -- tg_runtime.h (what the validation app calls) on the
 * project's tinygen_model library, so `tinygen verify` checks the very code a
 * user's program links: the same model, runtime and glue, through the same
 * public header. Only the status numbers are translated to the protocol's.
 */
#include <stdint.h>

#include "tinygen_model.h"
#include "tinygen_model_runtime.h"
#include "tg_model_info.h"
#include "tg_protocol.h"
#include "tg_runtime.h"

#if TINYGEN_MODEL_INPUT_COUNT != TG_INPUT_BYTES || TINYGEN_MODEL_OUTPUT_COUNT != TG_OUTPUT_BYTES
#error "tinygen_model.h and tg_model_info.h describe different models"
#endif

int tg_runtime_init(void)
{
    switch (tinygen_model_init()) {
    case TINYGEN_MODEL_OK: return TG_STATUS_OK;
    case TINYGEN_MODEL_ERR_ALLOC_FAILED: return TG_STATUS_ALLOC_FAILED;
    case TINYGEN_MODEL_ERR_UNSUPPORTED_OP: return TG_STATUS_UNSUPPORTED_OP;
    case TINYGEN_MODEL_ERR_MODEL_MISMATCH: return TG_STATUS_MODEL_MISMATCH;
    default: return TG_STATUS_RUNTIME_INIT_FAILED;
    }
}

const char *tg_runtime_name(void) { return tinygen_model_runtime_name(); }

uint32_t tg_runtime_arena_bytes(void) { return tinygen_model_arena_bytes(); }

int tg_runtime_invoke(const int8_t *in, int8_t *out)
{
    /* the library's status code (non-zero) is what INVOKE_FAILED carries */
    return tinygen_model_predict_int8(in, TINYGEN_MODEL_INPUT_COUNT, out, TINYGEN_MODEL_OUTPUT_COUNT);
}

int tg_runtime_set_op_hook(tg_runtime_op_hook_t hook, void *ctx)
{
    /* the two hook types are spelled alike, so the pointer passes through unchanged */
    return tinygen_model_rt_set_op_hook(hook, ctx);
}
