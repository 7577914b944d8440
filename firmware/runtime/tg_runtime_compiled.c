/*
 * tg_runtime_compiled.c -- tg_runtime.h on tinygen's compiled runtime.
 *
 * The model is plain C (tg_model.c, emitted per model) over our kernels
 * (tg_kernels.h and its .c files): nothing to initialise, no interpreter, a
 * static arena.
 */
#include <stdint.h>

#include "tg_model.h"
#include "tg_model_info.h"
#include "tg_protocol.h"
#include "tg_runtime.h"

#if TG_CM_INPUT_BYTES != TG_INPUT_BYTES || TG_CM_OUTPUT_BYTES != TG_OUTPUT_BYTES
#error "tg_model.h and tg_model_info.h describe different models"
#endif

int tg_runtime_init(void) { return TG_STATUS_OK; }

const char *tg_runtime_name(void) { return "compiled"; }

uint32_t tg_runtime_arena_bytes(void) { return (uint32_t)TG_CM_ARENA_BYTES; }

int tg_runtime_invoke(const int8_t *in, int8_t *out) { return tg_invoke(in, out); }
