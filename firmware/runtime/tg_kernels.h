/*
 * tg_kernels.h -- int8 kernels of tinygen's compiled runtime: the one header
 * the emitted model code includes.
 *
 * The emitted tg_model.c is a straight-line sequence of calls to these
 * functions. Every shape, offset and quantization parameter is a
 * compile-time constant that tinygen checked in Python before emitting it,
 * so the kernels do no validation of their own: they never allocate, never
 * touch memory outside the buffers whose sizes the parameters describe, and
 * use integer arithmetic only.
 *
 * Arithmetic is bit-exact with the TensorFlow Lite Micro reference kernels
 * (the "double rounding" MultiplyByQuantizedMultiplier that the tflite_micro
 * build uses; see tinygen/codegen/compiled/quant.py for the parameter side).
 *
 * Build switches:
 *   __ARM_FEATURE_DSP   (set by the compiler, e.g. -mcpu=cortex-m4): inner
 *                       multiply-accumulate loops use the DSP extension
 *                       (SMLAD/SMLABB/SMLATT). Results are identical to the
 *                       portable C loops.
 *   TG_NO_DSP           force the portable C loops even where DSP exists.
 *   __ARM_FEATURE_MVE   (e.g. -mcpu=cortex-m55 -mfloat-abi=hard): CONV_2D,
 *                       DEPTHWISE_CONV_2D and FULLY_CONNECTED run their Helium
 *                       paths (tg_mve.h); identical results. TG_NO_MVE (or
 *                       TG_NO_DSP) keeps the DSP / portable paths.
 *   TG_DSP_EMULATE      (host testing only) run the DSP code path with C models
 *                       of the DSP instructions, e.g. under ASan/UBSan.
 *   TG_SINGLE_ROUNDING  use the "single rounding" multiplier variant instead.
 *                       Only for the test that establishes which variant the
 *                       reference uses; the Python side always precomputes
 *                       parameters for the double-rounding variant.
 *
 * Files (one per op family; tests/compiled/test_ir.py checks this list):
 * tg_activation.c (SOFTMAX, LOGISTIC, TANH, LEAKY_RELU, HARD_SWISH, ABS),
 * tg_conv.c (CONV_2D), tg_depthwise_conv.c (DEPTHWISE_CONV_2D), tg_conv_mve.c,
 * tg_depthwise_mve.c and tg_fc_mve.c (the Helium paths of CONV_2D, DEPTHWISE_CONV_2D
 * and FULLY_CONNECTED),
 * tg_elementwise.c (ADD, MUL, SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, PRELU,
 * requantize, clamp), tg_fixedpoint.c, tg_fully_connected.c (FULLY_CONNECTED),
 * tg_gather.c (TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK),
 * tg_pool.c (AVERAGE_POOL_2D, MAX_POOL_2D), tg_reduce.c (MEAN, SUM,
 * REDUCE_MAX, REDUCE_MIN), tg_resize.c (RESIZE_NEAREST_NEIGHBOR,
 * RESIZE_BILINEAR), tg_shape.c (PAD, CONCATENATION, PACK, copy),
 * tg_transpose_conv.c (TRANSPOSE_CONV), tg_band.c (a band: a chain of convolutions run
 * row by row); internal headers tg_fixedpoint.h
 * (fixed-point arithmetic), tg_dsp.h (DSP instructions), tg_conv_dot.h (CONV_2D's
 * fused dot products, tg_conv.c's), tg_mve.h (the MVE paths' shared parts), tg_index.h.
 */
#ifndef TG_KERNELS_H
#define TG_KERNELS_H

#include <stdint.h>

/* The calling convention between emitted model code and these kernels (names,
 * parameter structs, weight layouts). Emitted code refuses to compile against
 * a different version; KERNELS_ABI_VERSION in tinygen/codegen/compiled/
 * printer.py is the same number, and any change to that convention bumps both. */
#define TG_KERNELS_ABI_VERSION 6

#ifdef __cplusplus
extern "C" {
#endif

#define TG_MAX_DIMS 6

/* ---- fixed-point primitives (for tests; the kernels use them too) -------- */

/* gemmlowp SaturatingRoundingDoublingHighMul. */
int32_t tg_sat_rounding_doubling_high_mul(int32_t a, int32_t b);
/* gemmlowp RoundingDivideByPOT, 0 <= exponent <= 31. */
int32_t tg_rounding_divide_by_pot(int32_t x, int32_t exponent);
/* TFLite MultiplyByQuantizedMultiplier(int32 x, multiplier, shift);
 * shift > 0 is a left shift. */
int32_t tg_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

/* ---- packed weights (CONV_2D and FULLY_CONNECTED) -------------------------
 *
 * tinygen packs these weights at code-generation time: each output channel's
 * K = filter_h * filter_w * filter_in_c (FC: accum_depth) values are padded
 * with zeros to K4 (a multiple of 4), and within each group the channels are
 * stored in pairs interleaved per block of 4 values:
 *     pair (2i, 2i+1): for each block j: 4 values of 2i, then 4 values of 2i+1
 * (an odd last channel of a group is stored alone, K4 values). The bias is
 * folded: bias'[oc] = bias[oc] + input_offset * sum_k w[oc][k] (never NULL),
 * so the kernels multiply raw input values (exactly equal in integer
 * arithmetic). CONV_2D's `scratch` receives two int16 im2col columns:
 * 4 * K4 bytes, 4-byte aligned. */

/* ---- fast requantization ---------------------------------------------------
 *
 * `fast_requant` (FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D), when not NULL, holds 3
 * int32 per channel ([out_c] of them if per_channel, else 1) and replaces
 * `multiplier` / `shift` (then NULL):
 *     multiplier, (left + 1) | (right << 8), right ? 2^(right - 1) : 0
 * (left / right: the shift split as in MultiplyByQuantizedMultiplier). tinygen
 * emits it only when every accumulator value the layer can produce satisfies
 * |acc| * 2^(left + 1) < 2^31; the kernels then requantize with one SMMULR and
 * a rounding shift, bit-exact with the double-rounding
 * MultiplyByQuantizedMultiplier. With NULL they use the generic path.
 *
 * `rq_fused`, when not NULL, replaces both (then NULL): 4 int32 per channel
 * ([out_c] of them if per_channel, else 1), m, left + 1, 2^(right - 1) +
 * output_offset * 2^right, right (tg_fixedpoint.h, tg_rq_fused): the output offset
 * folded in, applied in the inner loops, 6 instructions per value; tinygen emits it
 * only where it proved it exact (quant.fused_requant_constants). */

/* ---- FULLY_CONNECTED ----------------------------------------------------- */

typedef struct {
    int32_t batches;      /* rows of the input */
    int32_t accum_depth;  /* input values per row = weight columns */
    int32_t accum_padded; /* K4: accum_depth rounded up to a multiple of 4 */
    int32_t output_depth; /* weight rows = output values per row */
    int32_t input_offset; /* -(input zero point); already folded into bias */
    int32_t output_offset;
    int32_t act_min, act_max;
    int32_t per_channel;  /* multiplier/shift: [output_depth] or [1] */
    const int8_t *weights;    /* packed, [output_depth][accum_padded] (see above) */
    const int32_t *bias;      /* folded, [output_depth] */
    const int32_t *multiplier;
    const int32_t *shift;
    const int32_t *fast_requant; /* fast requantization constants or NULL (above) */
    const int32_t *rq_fused;     /* fused requantization constants or NULL (above) */
} tg_fc_params_t;

/* No scratch: the input rows are read directly. */
void tg_fully_connected_s8(const tg_fc_params_t *p, const int8_t *input, int8_t *output);

/* ---- CONV_2D / DEPTHWISE_CONV_2D (NHWC) ----------------------------------- */

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t filter_h, filter_w;
    int32_t filter_in_c;      /* conv: channels per group (in_c for ungrouped) */
    int32_t depth_multiplier; /* depthwise only */
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_h, pad_w;     /* top / left padding */
    int32_t input_offset;
    int32_t output_offset;
    int32_t act_min, act_max;
    int32_t per_channel;
    int32_t k_padded;         /* conv: K4 (see "packed weights"); dw: 0 */
    const int8_t *weights;    /* conv: packed [out_c][K4]; dw: [fh][fw][out_c] */
    const int32_t *bias;      /* conv: folded [out_c]; dw: [out_c] or NULL */
    const int32_t *multiplier;
    const int32_t *shift;
    const int32_t *fast_requant; /* fast requantization constants or NULL (above) */
    const int32_t *rq_fused;     /* fused requantization constants or NULL (above) */
    /* depthwise 3x3, depth multiplier dm <= 8, in_c >= 4: 22 words per (group of 4
     * input channels, m in [0, dm)), for the output channels c_j = (4 g + j) * dm + m:
     * bias[c_j] + input_offset * (sum of c_j's 9 weights) for j = 0..3 (0 for a NULL
     * bias), then the weights pre-widened to int16 pairs (lo, hi) -- all of them doubled
     * when rq_fused is not NULL (its second word is then 0: the kernel's accumulators,
     * the scalar tail's too, are 2 * acc) -- for taps (t, t + 1) = (0, 1),
     * (2, 3), (4, 5), (6, 7) (tap = ky * 3 + kx) the words (w[t][c_j], w[t + 1][c_j])
     * for j = 0, 2, 1, 3, then (w[8][c_0], w[8][c_2]), (w[8][c_1], w[8][c_3]). Used by
     * the DSP path for the input channels [0, in_c & ~3) of every pixel (taps
     * outside the input read zero-point bytes); NULL otherwise. */
    const int32_t *dw3x3_widened;
} tg_conv_params_t;

/* Output over input (tinygen/codegen/compiled/overlap.py): with one batch, the memory plan
 * may start a conv's, depthwise conv's or pool's output a few pixels below its input, in the
 * same bytes. These kernels must keep: output pixels in row-major order, no byte of pixel
 * k + 2 written before pixel k's reads are done, each pixel reading only its receptive field
 * (padding from elsewhere). Change overlap.py with any kernel that breaks this. */
void tg_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output, int16_t *scratch);
void tg_depthwise_conv2d_s8(const tg_conv_params_t *p, const int8_t *input, int8_t *output);

/* ---- AVERAGE_POOL_2D / MAX_POOL_2D (NHWC) -------------------------------- */

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;
    int32_t act_min, act_max;
} tg_pool_params_t;

void tg_avg_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output);
void tg_max_pool_s8(const tg_pool_params_t *p, const int8_t *input, int8_t *output);

/* ---- SOFTMAX (int8 in, int8 out with scale 1/256, zero point -128) -------- */

typedef struct {
    int32_t outer;            /* rows */
    int32_t depth;            /* values per row (last dimension) */
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} tg_softmax_params_t;

void tg_softmax_s8(const tg_softmax_params_t *p, const int8_t *input, int8_t *output);

/* ---- LOGISTIC / TANH ---------------------------------------------------- */

typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t input_range_radius;
    int32_t input_multiplier;
    int32_t input_left_shift;
} tg_sigmoid_params_t;

void tg_logistic_s8(const tg_sigmoid_params_t *p, const int8_t *input, int8_t *output);
void tg_tanh_s8(const tg_sigmoid_params_t *p, const int8_t *input, int8_t *output);

/* ---- ADD / MUL with broadcasting ---------------------------------------- */

/* rank == 0: both inputs have the output's shape (flat loop over size).
 * Otherwise out_dims are the output's dimensions (left-padded to rank) and
 * a_strides / b_strides the element strides of each input, 0 along a
 * broadcast dimension. */
typedef struct {
    int32_t rank;
    int32_t out_dims[TG_MAX_DIMS];
    int32_t a_strides[TG_MAX_DIMS];
    int32_t b_strides[TG_MAX_DIMS];
} tg_broadcast_t;

typedef struct {
    int32_t size;
    tg_broadcast_t bcast;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t left_shift;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
    /* ADD only (NULL for SUB / SQUARED_DIFFERENCE, and where not provably exact): the
     * input1, input2 and output requantizations as 3 x 4 fused constants (tg_rq_fused;
     * quant.add_fused_constants). */
    const int32_t *rq_fused;
} tg_add_params_t;

typedef struct {
    int32_t size;
    tg_broadcast_t bcast;
    int32_t input1_offset, input2_offset, output_offset;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} tg_mul_params_t;

void tg_add_s8(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void tg_mul_s8(const tg_mul_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);

/* ---- elementwise requantization (RELU, QUANTIZE) and clamping (RELU6) ---- */

typedef struct {
    int32_t size;
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier, shift;
    int32_t act_min, act_max;
} tg_requant_params_t;

void tg_requantize_s8(const tg_requant_params_t *p, const int8_t *input, int8_t *output);
void tg_clamp_s8(int32_t size, int8_t lo, int8_t hi, const int8_t *input, int8_t *output);

/* ---- PAD ---------------------------------------------------------------- */

typedef struct {
    int32_t rank;
    int32_t in_dims[TG_MAX_DIMS];
    int32_t out_dims[TG_MAX_DIMS];
    int32_t before[TG_MAX_DIMS];
    int32_t out_size;
    int32_t pad_value;
} tg_pad_params_t;

void tg_pad_s8(const tg_pad_params_t *p, const int8_t *input, int8_t *output);

/* ---- MEAN, SUM, REDUCE_MAX, REDUCE_MIN (tg_reduce.c) ----------------------- */

/* Output element o (row-major over the kept dimensions) reduces the input
 * elements at base(o) + sum(r_i * red_strides[i]): MEAN (and SUM, with a
 * multiplier not divided by the count) requantizes their sum; REDUCE_MAX /
 * REDUCE_MIN take the raw extreme (input and output share one quantization,
 * the quantization fields are unused). */
typedef struct {
    int32_t kept_rank;
    int32_t kept_dims[TG_MAX_DIMS];
    int32_t kept_strides[TG_MAX_DIMS];
    int32_t red_rank;
    int32_t red_dims[TG_MAX_DIMS];
    int32_t red_strides[TG_MAX_DIMS];
    int32_t num_reduced;      /* product of red_dims */
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier, shift;   /* MEAN: already divided by num_reduced */
} tg_reduce_params_t;

void tg_mean_s8(const tg_reduce_params_t *p, const int8_t *input, int8_t *output);
void tg_reduce_max_s8(const tg_reduce_params_t *p, const int8_t *input, int8_t *output);
void tg_reduce_min_s8(const tg_reduce_params_t *p, const int8_t *input, int8_t *output);

/* ==== shape and spatial ops (tg_gather.c, tg_resize.c, tg_transpose_conv.c) ==== */

/* TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK: the output (row-major over
 * dims) is input[offset + sum(idx[d] * strides[d])]. g holds
 * rank (1..TG_MAX_DIMS), offset, dims[rank], strides[rank] (strides may be
 * negative or 0). PACK is tg_concat_s8. */
void tg_gather_s8(const int32_t *g, const int8_t *input, int8_t *output);

/* RESIZE_NEAREST_NEIGHBOR: ys[out_h] / xs[out_w] are the source row / column of
 * each output row / column. RESIZE_BILINEAR: ys[3 * out_h] holds (y0, y1, dy)
 * per output row, xs[3 * out_w] (x0, x1, dx) per column; the weight of y1 is
 * dy / 1024 and of y0 (1024 - dy) / 1024 (dy may lie outside [0, 1024] where
 * y0 == y1, as in TFLM). */
typedef struct {
    int32_t batches;
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    const int32_t *ys;
    const int32_t *xs;
} tg_resize_params_t;

void tg_resize_nearest_s8(const tg_resize_params_t *p, const int8_t *input, int8_t *output);
void tg_resize_bilinear_s8(const tg_resize_params_t *p, const int8_t *input, int8_t *output);

/* TRANSPOSE_CONV: weights [out_c][filter_h][filter_w][in_c] as in the model;
 * bias [out_c] or NULL; multiplier / shift [out_c] if per_channel, else [1].
 * scratch: out_h * out_w * out_c int32 (4-byte aligned). */
typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;
    int32_t input_offset, output_offset;
    int32_t act_min, act_max;
    int32_t per_channel;
    const int8_t *weights;
    const int32_t *bias;
    const int32_t *multiplier;
    const int32_t *shift;
} tg_transpose_conv_params_t;

void tg_transpose_conv_s8(const tg_transpose_conv_params_t *p, const int8_t *input, int8_t *output,
                          int32_t *scratch);

/* ---- CONCATENATION / RESHAPE copies -------------------------------------- */

/* output = for each of `outer` rows: input[0] row, input[1] row, ...
 * where input i contributes inner_bytes[i] bytes per row. */
void tg_concat_s8(int32_t outer, int32_t n_inputs, const int8_t *const *inputs,
                  const int32_t *inner_bytes, int8_t *output);
void tg_copy_s8(int32_t size, const int8_t *input, int8_t *output);

/* ==== elementwise, activation and reduction ops ============================
 * tg_activation.c: LEAKY_RELU, HARD_SWISH, ABS; tg_elementwise.c: PRELU, SUB,
 * SQUARED_DIFFERENCE, MINIMUM, MAXIMUM (the reductions are with MEAN above). */

/* LEAKY_RELU: x >= zero point scales by input/output scale, below it by
 * alpha * input/output scale (alpha >= 0). */
typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t identity_multiplier, identity_shift;
    int32_t alpha_multiplier, alpha_shift;
} tg_leaky_relu_params_t;

void tg_leaky_relu_s8(const tg_leaky_relu_params_t *p, const int8_t *input, int8_t *output);

/* PRELU: alpha (int8, its own zero point) broadcast against the input as
 * bcast describes (a_strides: input, b_strides: alpha). */
typedef struct {
    int32_t size;
    tg_broadcast_t bcast;
    int32_t input_offset, alpha_offset, output_offset;
    int32_t identity_multiplier, identity_shift;
    int32_t alpha_multiplier, alpha_shift;
} tg_prelu_params_t;

void tg_prelu_s8(const tg_prelu_params_t *p, const int8_t *input, const int8_t *alpha, int8_t *output);

/* HARD_SWISH in TFLM's int16 fixed point: Q15 multipliers with their
 * exponents (output_exponent in [-15, 0], reluish_exponent in [-15, 30]). */
typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t output_multiplier, output_exponent;
    int32_t reluish_multiplier, reluish_exponent;
} tg_hard_swish_params_t;

void tg_hard_swish_s8(const tg_hard_swish_params_t *p, const int8_t *input, int8_t *output);

/* ABS: |x - input zero point|, requantized only if rescale is non-zero. */
typedef struct {
    int32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t rescale;
    int32_t multiplier, shift;
} tg_abs_params_t;

void tg_abs_s8(const tg_abs_params_t *p, const int8_t *input, int8_t *output);

/* SUB (left_shift 20) and SQUARED_DIFFERENCE (left_shift 7, output multiplier
 * applied to the squared difference) take ADD's parameters. */
void tg_sub_s8(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void tg_squared_difference_s8(const tg_add_params_t *p, const int8_t *input1, const int8_t *input2,
                              int8_t *output);

/* MINIMUM / MAXIMUM compare the raw int8 values (as TFLM does). */
typedef struct {
    int32_t size;
    tg_broadcast_t bcast;
} tg_minmax_params_t;

void tg_minimum_s8(const tg_minmax_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void tg_maximum_s8(const tg_minmax_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);

/* ---- band: a chain of CONV_2D / DEPTHWISE_CONV_2D run row by row ------------ */

/* One stage of a band (tinygen/codegen/compiled/band.py): its op's own params
 * (whole-tensor geometry; the band calls the kernel on one output row at a time
 * with a copy whose in_h, out_h and pad_h cover that row), and, except for the
 * last stage, a window holding its last window_rows output rows, oldest first,
 * which is what the next stage reads. */
typedef void (*tg_band_kernel_t)(const tg_conv_params_t *p, const int8_t *input, int8_t *output,
                                 int16_t *scratch);

typedef struct {
    const tg_conv_params_t *conv;
    tg_band_kernel_t kernel; /* tg_conv2d_s8 or tg_band_depthwise: a pointer, so a model
                              * links only the kernels it uses */
    int8_t *window;          /* NULL for the last stage */
    int32_t window_rows;     /* the next stage's filter height */
} tg_band_stage_t;

/* tg_depthwise_conv2d_s8 with tg_band_kernel_t's signature (scratch unused). */
void tg_band_depthwise(const tg_conv_params_t *p, const int8_t *input, int8_t *output, int16_t *scratch);

#define TG_BAND_MAX_STAGES 16

/* A band: stage 0 reads `input` (in_h rows); the last stage writes `output`
 * row by row, or, with `add`, into `row` and then ADD(input row, row) (or
 * ADD(row, input row) when add_input_first is 0) into `output` -- a residual
 * block whose intermediate tensors never exist whole. Every output pixel is
 * computed by the same kernel code as the unbanded op, so results are
 * identical. When the plan puts output over input (a residual band), input
 * row r is read for the last time while output row r is written. */
typedef struct {
    int32_t stages;
    const tg_band_stage_t *stage;
    const tg_add_params_t *add; /* NULL: no residual ADD; else its params for one row */
    int32_t add_input_first;
    int8_t *row;                /* last stage's output row when add != NULL */
    int16_t *scratch;           /* the conv stages' im2col scratch (shared) */
} tg_band_params_t;

void tg_band_s8(const tg_band_params_t *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_KERNELS_H */
