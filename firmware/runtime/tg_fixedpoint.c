/*
 * tg_fixedpoint.c -- the fixed-point primitives of tg_fixedpoint.h as
 * linkable functions: for tests, and for the kernels outside the hot loops
 * (softmax, logistic, tanh, add, mul, mean), which call them rather than
 * inline them to stay small.
 */
#include "tg_fixedpoint.h"
#include "tg_kernels.h"

int32_t tg_sat_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    return tg_sat_rounding_doubling_high_mul_inline(a, b);
}

int32_t tg_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    return tg_rounding_divide_by_pot_inline(x, exponent);
}

int32_t tg_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    return tg_multiply_by_quantized_multiplier_inline(x, multiplier, shift);
}
