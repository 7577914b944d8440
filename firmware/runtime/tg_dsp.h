/*
 * tg_dsp.h -- internal to the kernels: build switches and the Cortex-M DSP
 * instructions (SXTB16, SXTAB16, SMLAD, SMLABB, SMLATT) the inner loops use.
 *
 * Everything here is static inline so that each kernel file inlines the
 * instructions into its loops exactly as a single-file build would.
 * TG_DSP_EMULATE (host testing only) gives the DSP code path C models of the
 * instructions, so that path runs under ASan/UBSan too (see tg_kernels.h).
 */
#ifndef TG_DSP_H
#define TG_DSP_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && !defined(TG_NO_DSP)
#include <arm_acle.h>
#define TG_USE_DSP 1
#define TG_HW_DSP 1
#elif defined(TG_DSP_EMULATE)
#define TG_USE_DSP 1
#define TG_HW_DSP 0
#else
#define TG_USE_DSP 0
#define TG_HW_DSP 0
#endif

#if defined(__GNUC__)
#define TG_INLINE static inline __attribute__((always_inline))
#define TG_NOINLINE __attribute__((noinline))
#define TG_MAYBE_UNUSED __attribute__((unused))
#else
#define TG_INLINE static inline
#define TG_NOINLINE
#define TG_MAYBE_UNUSED
#endif

/* Unaligned 32-bit load / store (one LDR / STR on Cortex-M4). */
TG_INLINE uint32_t tg_load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

TG_INLINE void tg_store_u32(void *p, uint32_t v) { memcpy(p, &v, sizeof v); }

/* DSP instructions on uint32_t values (two int16 halves or four int8 bytes). */
#if TG_HW_DSP
TG_INLINE uint32_t tg_sxtb16(uint32_t v) { return (uint32_t)__sxtb16((int8x4_t)v); }
TG_INLINE uint32_t tg_sxtb16_ror8(uint32_t v)
{
#if defined(__GNUC__)
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
#else
    return (uint32_t)__sxtb16((int8x4_t)((v >> 8) | (v << 24)));
#endif
}
TG_INLINE uint32_t tg_sxtab16(uint32_t a, uint32_t v) { return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)v); }
TG_INLINE uint32_t tg_sxtab16_ror8(uint32_t a, uint32_t v)
{
#if defined(__GNUC__)
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
#else
    return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)((v >> 8) | (v << 24)));
#endif
}
TG_INLINE int32_t tg_smlad(uint32_t a, uint32_t b, int32_t acc) { return __smlad((int16x2_t)a, (int16x2_t)b, acc); }
TG_INLINE int32_t tg_smlabb(uint32_t a, uint32_t b, int32_t acc) { return __smlabb((int16x2_t)a, (int16x2_t)b, acc); }
TG_INLINE int32_t tg_smlatt(uint32_t a, uint32_t b, int32_t acc) { return __smlatt((int16x2_t)a, (int16x2_t)b, acc); }
#elif TG_USE_DSP
static inline int32_t tg_lo16(uint32_t v) { return (int32_t)(int16_t)(uint16_t)(v & 0xFFFFu); }
static inline int32_t tg_hi16(uint32_t v) { return (int32_t)(int16_t)(uint16_t)(v >> 16); }
static inline uint32_t tg_pack16(int32_t lo, int32_t hi) { return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16); }
static inline int32_t tg_byte_s8(uint32_t v, int32_t i) { return (int32_t)(int8_t)(uint8_t)((v >> (8 * i)) & 0xFFu); }
static inline uint32_t tg_sxtb16(uint32_t v) { return tg_pack16(tg_byte_s8(v, 0), tg_byte_s8(v, 2)); }
static inline uint32_t tg_sxtb16_ror8(uint32_t v) { return tg_pack16(tg_byte_s8(v, 1), tg_byte_s8(v, 3)); }
static inline uint32_t tg_sxtab16(uint32_t a, uint32_t v)
{
    return tg_pack16(tg_lo16(a) + tg_byte_s8(v, 0), tg_hi16(a) + tg_byte_s8(v, 2));
}
static inline uint32_t tg_sxtab16_ror8(uint32_t a, uint32_t v)
{
    return tg_pack16(tg_lo16(a) + tg_byte_s8(v, 1), tg_hi16(a) + tg_byte_s8(v, 3));
}
static inline int32_t tg_wrap_add(int32_t acc, int32_t p) { return (int32_t)((uint32_t)acc + (uint32_t)p); }
static inline int32_t tg_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return tg_wrap_add(tg_wrap_add(acc, tg_lo16(a) * tg_lo16(b)), tg_hi16(a) * tg_hi16(b));
}
static inline int32_t tg_smlabb(uint32_t a, uint32_t b, int32_t acc) { return tg_wrap_add(acc, tg_lo16(a) * tg_lo16(b)); }
static inline int32_t tg_smlatt(uint32_t a, uint32_t b, int32_t acc) { return tg_wrap_add(acc, tg_hi16(a) * tg_hi16(b)); }
#endif

#if TG_USE_DSP
#if TG_HW_DSP && defined(__GNUC__)
/* Loads with post-increment, as the instructions the loops are built around
 * (GCC does not always form them itself). Weights are 4-byte aligned. */
#define TG_LDR_INC(a, p) __asm__ volatile("ldr %0, [%1], #4" : "=r"(a), "+r"(p))
#define TG_LDRD_INC(a, b, p) __asm__ volatile("ldrd %0, %1, [%2], #8" : "=r"(a), "=r"(b), "+r"(p))
#else
#define TG_LDR_INC(a, p) do { (a) = tg_load_u32(p); (p) += 1; } while (0)
#define TG_LDRD_INC(a, b, p) do { (a) = tg_load_u32(p); (b) = tg_load_u32((p) + 1); (p) += 2; } while (0)
#endif
/* The DSP loops read int8 weights and int16 columns a word at a time. */
#define TG_WORDS(p) ((const uint32_t *)(const void *)(p))
#else
#define TG_WORDS(p) (p)
#endif

#endif /* TG_DSP_H */
