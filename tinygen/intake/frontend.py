"""The feature front end: raw int16 samples -> the model's int8 input, defined once.

A :class:`FrontendSpec` (a frozen dataclass, stored as JSON in the project manifest or given
with ``--frontend FILE.json``) says how samples become features.  Two kinds:

- ``audio`` (keyword spotting): frames of ``frame_length`` samples every ``frame_step``,
  a Q15 window, a real FFT of ``fft_size`` points, the power spectrum, a triangular mel
  filter bank of ``bands`` bands between ``lower_hz`` and ``upper_hz``, log2.  Features:
  ``(frames, bands, 1)``.
- ``imu`` (gesture / vibration): interleaved 3-axis samples; per frame and axis the mean,
  minimum, maximum and mean absolute deviation, then the log2 energy of the mean-removed,
  windowed frame's spectrum in ``bands`` equal-width bands.  Features: ``(frames, 3 * (4 + bands))``.

Every feature is an int32 in "feature units" (a float feature is ``value / 256``: log2 in Q8 for
spectra, raw sample counts / 256 for statistics); :func:`requantize` maps them to the model's
int8 input with an integer multiplier.

Why tinygen's own fixed-point code and not a library's: the C that runs on the board must ship
with tinygen (firmware/frontend/tg_frontend.c) and tinygen ships no third-party source tree, so
neither CMSIS-DSP's arm_rfft_q15 / arm_mfcc_q15 nor tflite-micro's signal library can be
linked into a generated project.  The pipeline follows tflite-micro's micro_speech front end
(window, FFT with automatic input scaling, filter bank with Q12 weights and 64-bit accumulators,
log scale) and CMSIS-DSP's scaled radix-2 Q15 FFT (each stage halves, so the result is DFT/N).
:func:`compute_int` here is the bit-exact twin of that C: it does the same integer operations in
the same order (numpy int64, vectorised over frames), and the tests compare the two bit for bit
and the FFT stage with numpy's float FFT within a stated bound.  :func:`compute_float` is the
float reference, for quality figures only.

All tables (window, twiddles, bit reversal, filter bank) are made here from the spec with
float64 arithmetic and emitted into C as constants (tinygen.codegen.frontend_c), so the board
never computes a transcendental and host and board read the same numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from functools import cached_property

import numpy as np

from tinygen.common.errors import TinygenError

KINDS = ("audio", "imu")
WINDOWS = ("hann", "hamming", "rect")
FEATURE_FRAC_BITS = 8  # feature units: value / 256
LOG_FRAC_BITS = 8
FB_WEIGHT_BITS = 12  # filter bank weights: Q12, as tflite-micro's filterbank
AUTOSCALE_BITS = 14  # the windowed frame is scaled so its largest |value| has 14 bits
MAX_FFT = 1024
MIN_FFT = 16
IMU_AXES = 3
IMU_STATS = ("mean", "min", "max", "mad")


class FrontendError(TinygenError):
    """A front-end definition tinygen cannot run (one line, exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class FrontendSpec:
    kind: str = "audio"
    sample_rate: int = 16000
    window_samples: int = 16000  # samples per axis in one inference
    frame_length: int = 480
    frame_step: int = 320
    fft_size: int = 512
    window: str = "hann"
    bands: int = 40
    lower_hz: float = 20.0  # audio only: the mel filter bank's range
    upper_hz: float = 7600.0

    # ---- derived -------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return 1 if self.kind == "audio" else IMU_AXES

    @property
    def n_frames(self) -> int:
        return 1 + (self.window_samples - self.frame_length) // self.frame_step

    @property
    def features_per_frame(self) -> int:
        return self.bands if self.kind == "audio" else IMU_AXES * (len(IMU_STATS) + self.bands)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The model's input shape without the batch dimension."""
        if self.kind == "audio":
            return (self.n_frames, self.bands, 1)
        return (self.n_frames, self.features_per_frame)

    @property
    def n_samples(self) -> int:
        """int16 values in one inference's raw input (interleaved for imu)."""
        return self.window_samples * self.channels

    def to_json(self) -> dict:
        return asdict(self)

    @cached_property
    def tables(self) -> "Tables":
        return make_tables(self)


def spec_from_json(data: object, what: str = "the front end") -> FrontendSpec:
    """A validated spec from parsed JSON (``{"frontend": {...}}`` or the fields themselves)."""
    if isinstance(data, dict) and "frontend" in data and isinstance(data["frontend"], dict):
        data = data["frontend"]
    if not isinstance(data, dict):
        raise FrontendError(f"{what} must be a JSON object with the front end's fields "
                            f"({', '.join(f.name for f in fields(FrontendSpec))})")
    known = {f.name: f for f in fields(FrontendSpec)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise FrontendError(f"{what} has an unknown field '{str(unknown[0])[:40]}'; "
                            f"its fields are: {', '.join(known)}")
    kw: dict = {}
    for name, value in data.items():
        ftype = type(getattr(FrontendSpec(), name))
        if ftype is str:
            if not isinstance(value, str):
                raise FrontendError(f"{what}: '{name}' must be a string")
        elif ftype is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise FrontendError(f"{what}: '{name}' must be an integer")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise FrontendError(f"{what}: '{name}' must be a finite number")
            value = float(value)
        kw[name] = value
    spec = FrontendSpec(**kw)
    validate(spec, what)
    return spec


def load_spec(path, what: str | None = None) -> FrontendSpec:
    """Read a --frontend FILE.json (bounded, untrusted) into a validated spec."""
    from pathlib import Path

    p = Path(path)
    label = what or f"--frontend {p.name[:80]!r}"
    try:
        if p.stat().st_size > 64 * 1024:
            raise FrontendError(f"{label} is larger than 64 KiB; a front-end definition is a few lines of JSON")
        text = p.read_text(encoding="utf-8")
    except FrontendError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise FrontendError(f"cannot read {label}: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FrontendError(f"{label} is not valid JSON (line {getattr(exc, 'lineno', '?')})") from None
    return spec_from_json(data, label)


def validate(spec: FrontendSpec, what: str = "the front end") -> None:
    """One line for the first thing the stage cannot handle."""
    if spec.kind not in KINDS:
        raise FrontendError(f"{what}: kind '{spec.kind[:20]}' is not one of {', '.join(KINDS)}")
    if spec.window not in WINDOWS:
        raise FrontendError(f"{what}: window '{spec.window[:20]}' is not one of {', '.join(WINDOWS)}")
    lo_sr, hi_sr = (4000, 48000) if spec.kind == "audio" else (10, 4000)
    if not lo_sr <= spec.sample_rate <= hi_sr:
        raise FrontendError(f"{what}: sample_rate {spec.sample_rate} Hz is outside what the {spec.kind} stage "
                            f"handles ({lo_sr}..{hi_sr} Hz); resample the data")
    n = spec.fft_size
    if n < MIN_FFT or n > MAX_FFT or n & (n - 1):
        raise FrontendError(f"{what}: fft_size {n} must be a power of two from {MIN_FFT} to {MAX_FFT}")
    if not 2 <= spec.frame_length <= n:
        raise FrontendError(f"{what}: frame_length {spec.frame_length} must be from 2 to fft_size ({n})")
    if not 1 <= spec.frame_step <= spec.frame_length:
        raise FrontendError(f"{what}: frame_step {spec.frame_step} must be from 1 to frame_length "
                            f"({spec.frame_length})")
    if not spec.frame_length <= spec.window_samples <= 1 << 20:
        raise FrontendError(f"{what}: window_samples {spec.window_samples} must be from frame_length "
                            f"({spec.frame_length}) to {1 << 20}")
    if spec.n_frames > 4096:
        raise FrontendError(f"{what}: {spec.n_frames} frames per inference is too many; raise frame_step")
    if not 1 <= spec.bands <= n // 2:
        raise FrontendError(f"{what}: bands {spec.bands} must be from 1 to fft_size/2 ({n // 2})")
    if spec.kind == "audio":
        nyq = spec.sample_rate / 2
        if not 0 <= spec.lower_hz < spec.upper_hz <= nyq:
            raise FrontendError(f"{what}: the mel range {spec.lower_hz:g}..{spec.upper_hz:g} Hz must satisfy "
                                f"0 <= lower_hz < upper_hz <= sample_rate/2 ({nyq:g})")
    _ = make_tables(spec, what)  # an empty filter band is refused there


# ---- tables (float64 once, then integers) ----------------------------------------------

@dataclass(frozen=True)
class Tables:
    window: np.ndarray  # int16, frame_length, Q15
    cos: np.ndarray  # int16, fft_size/2, Q15 cos(2 pi k / N)
    sin: np.ndarray  # int16, fft_size/2, Q15 sin(2 pi k / N)
    bitrev: np.ndarray  # uint16, fft_size/4: the bit reversal of 2q (the complex FFT has N/2 points)
    band_start: np.ndarray  # uint16, bands: first FFT bin of each band
    band_len: np.ndarray  # uint16, bands
    band_offset: np.ndarray  # uint16, bands: index of the band's first weight
    weights: np.ndarray  # uint16, Q12

    twiddle: np.ndarray  # uint32, fft_size/2: cos | sin << 16 (the C's packed twiddles)
    log_lut: np.ndarray  # uint8, 256: round(256 log2(1 + i/256)), the log's fraction for 8 bits after the top one


LOG_LUT = np.round(256.0 * np.log2(1.0 + np.arange(256) / 256.0)).astype(np.uint8)


def _q15(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _mel(f):
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def make_tables(spec: FrontendSpec, what: str = "the front end") -> Tables:
    n, L = spec.fft_size, spec.frame_length
    i = np.arange(L, dtype=np.float64)
    if spec.window == "hann":  # periodic, as tflite-micro's window op
        w = 0.5 - 0.5 * np.cos(2 * np.pi * i / L)
    elif spec.window == "hamming":
        w = 0.54 - 0.46 * np.cos(2 * np.pi * i / L)
    else:
        w = np.ones(L)
    k = np.arange(n // 2, dtype=np.float64)
    m = n // 2
    bits = m.bit_length() - 1
    bitrev = np.array([int(format(j, f"0{bits}b")[::-1], 2) for j in range(0, m, 2)], dtype=np.uint16)
    nbins = m + 1
    starts, lens, offsets, weights = [], [], [], []
    if spec.kind == "audio":
        edges = np.linspace(_mel(spec.lower_hz), _mel(spec.upper_hz), spec.bands + 2)
        bin_mel = _mel(np.arange(nbins) * spec.sample_rate / n)
        for b in range(spec.bands):
            lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
            tri = np.minimum((bin_mel - lo) / (mid - lo), (hi - bin_mel) / (hi - mid))
            q = np.round(np.clip(tri, 0, 1) * (1 << FB_WEIGHT_BITS)).astype(np.int64)
            nz = np.nonzero(q)[0]
            if len(nz) == 0:
                raise FrontendError(f"{what}: mel band {b} of {spec.bands} holds no FFT bin at fft_size {n} and "
                                    f"{spec.sample_rate} Hz; use fewer bands or a larger fft_size")
            starts.append(int(nz[0]))
            lens.append(int(nz[-1] - nz[0] + 1))
            offsets.append(len(weights))
            weights += [int(v) for v in q[nz[0]:nz[-1] + 1]]
    else:  # equal-width rectangular bands over bins 1..N/2 (DC is the mean, already a feature)
        edges_i = np.linspace(1, nbins, spec.bands + 1)
        for b in range(spec.bands):
            a, e = int(round(edges_i[b])), int(round(edges_i[b + 1]))
            if e <= a:
                raise FrontendError(f"{what}: band {b} of {spec.bands} holds no FFT bin at fft_size {n}; "
                                    "use fewer bands or a larger fft_size")
            starts.append(a)
            lens.append(e - a)
            offsets.append(len(weights))
            weights += [1 << FB_WEIGHT_BITS] * (e - a)
    cos, sin = _q15(np.cos(2 * np.pi * k / n)), _q15(np.sin(2 * np.pi * k / n))
    return Tables(window=_q15(w).clip(-32767, 32767).astype(np.int16), cos=cos, sin=sin, log_lut=LOG_LUT,
                  twiddle=cos.astype(np.uint16).astype(np.uint32) | (sin.astype(np.uint16).astype(np.uint32) << 16),
                  bitrev=bitrev, band_start=np.array(starts, np.uint16), band_len=np.array(lens, np.uint16),
                  band_offset=np.array(offsets, np.uint16), weights=np.array(weights, np.uint16))


# ---- the fixed-point twin of firmware/frontend/tg_frontend.c ------------------------------
# Every operation below is an int64 numpy operation whose result fits the C type the C uses
# (int32 unless said); >> on negative values is arithmetic (floor) in both.

def _bit_length(v: np.ndarray) -> np.ndarray:
    """bit length of non-negative int64 values (0 for 0), exactly."""
    out = np.zeros(v.shape, dtype=np.int64)
    x = v.astype(np.int64).copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = x >= (np.int64(1) << shift)
        out += np.where(big, shift, 0)
        x = np.where(big, x >> shift, x)
    return out + (x > 0)


def autoscale(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each frame (rows) so its largest |value| has AUTOSCALE_BITS bits; returns (scaled, shift)."""
    s = np.where((mx := np.abs(frames).max(axis=-1)) > 0, AUTOSCALE_BITS - _bit_length(mx), 0)
    left = np.maximum(s, 0)[..., None]
    right = np.maximum(-s, 0)[..., None]
    return (frames * (np.int64(1) << left)) >> right, s


def _scale(x: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """x * 2^sh where sh >= 0, else x >> -sh (floor); sh per frame."""
    sh = np.asarray(sh)[..., None]
    return np.where(sh >= 0, x * (np.int64(1) << np.maximum(sh, 0)), x >> np.maximum(-sh, 0))


def fft_int(v: np.ndarray, shift: np.ndarray, tables: Tables) -> tuple[np.ndarray, np.ndarray]:
    """Real FFT of windowed int rows (length N, zero padded, not yet scaled) with the autoscale
    ``shift`` per row -> (re, im) of N/2+1 bins, scaled to DFT(v * 2^shift) / N.

    N/2-point complex radix-2 DIT FFT of the even/odd samples as re/im, every stage halving: stage 1
    reads bit-reversed pairs from v, (a +- b) * 2^(shift-1); later stages round twiddle products in
    Q15 except the exact twiddle 1; then the split.  Every value fits int16, as in the C."""
    n = v.shape[-1]
    m = n // 2
    p = 2 * tables.bitrev.astype(np.int64)
    ar, ai, br, bi = v[..., p], v[..., p + 1], v[..., p + m], v[..., p + m + 1]
    sh = np.asarray(shift) - 1
    zr = np.empty(v.shape[:-1] + (m,), dtype=np.int64)
    zi = np.empty_like(zr)
    zr[..., 0::2], zr[..., 1::2] = _scale(ar + br, sh), _scale(ar - br, sh)
    zi[..., 0::2], zi[..., 1::2] = _scale(ai + bi, sh), _scale(ai - bi, sh)
    cos = tables.cos.astype(np.int64)
    sin = tables.sin.astype(np.int64)
    length = 4
    while length <= m:
        half = length // 2
        j = np.arange(half)
        c = cos[j * (n // length)]
        s = sin[j * (n // length)]
        shp = zr.shape[:-1] + (m // length, length)
        zr = zr.reshape(shp)
        zi = zi.reshape(shp)
        ar, ai = zr[..., :half], zi[..., :half]
        br, bi = zr[..., half:], zi[..., half:]
        tr = (br * c + bi * s + (1 << 14)) >> 15
        ti = (bi * c - br * s + (1 << 14)) >> 15
        tr[..., 0] = br[..., 0]  # twiddle 1: exact
        ti[..., 0] = bi[..., 0]
        zr = np.concatenate([(ar + tr) >> 1, (ar - tr) >> 1], axis=-1).reshape(v.shape[:-1] + (m,))
        zi = np.concatenate([(ai + ti) >> 1, (ai - ti) >> 1], axis=-1).reshape(v.shape[:-1] + (m,))
        length *= 2
    k = np.arange(m + 1)
    mr, mi = zr[..., (m - k) % m], zi[..., (m - k) % m]
    kr, ki = zr[..., k % m], zi[..., k % m]
    fe_r = (kr + mr) >> 1
    fe_i = (ki - mi) >> 1
    fo_r = (ki + mi) >> 1
    fo_i = (mr - kr) >> 1
    c = np.concatenate([cos, [-32768]])
    s = np.concatenate([sin, [0]])
    tr = (fo_r * c + fo_i * s + (1 << 14)) >> 15
    ti = (fo_i * c - fo_r * s + (1 << 14)) >> 15
    return (fe_r + tr) >> 1, (fe_i + ti) >> 1


def filterbank(power: np.ndarray, tables: Tables) -> np.ndarray:
    """Sum of power[bin] * Q12 weight per band (uint64 in C; fits int64 here: < 2^52)."""
    out = np.zeros(power.shape[:-1] + (len(tables.band_start),), dtype=np.int64)
    w = tables.weights.astype(np.int64)
    for b in range(len(tables.band_start)):
        a, ln, o = int(tables.band_start[b]), int(tables.band_len[b]), int(tables.band_offset[b])
        out[..., b] = (power[..., a:a + ln] * w[o:o + ln]).sum(axis=-1)
    return out


def log2_q8(e: np.ndarray) -> np.ndarray:
    """log2(e + 1) in Q8 for 0 <= e < 2^62: the integer part is the bit length, the fraction
    LOG_LUT's entry for the 8 bits after the leading one (truncated: within 1.5 Q8 units)."""
    v = e.astype(np.int64) + 1
    ip = _bit_length(v) - 1
    top = np.where(ip >= 8, v >> np.maximum(ip - 8, 0), v << np.maximum(8 - ip, 0)) & 255
    return ip * (1 << LOG_FRAC_BITS) + LOG_LUT[top].astype(np.int64)


def _frames(samples: np.ndarray, spec: FrontendSpec) -> np.ndarray:
    idx = np.arange(spec.n_frames)[:, None] * spec.frame_step + np.arange(spec.frame_length)[None, :]
    return samples[..., idx]


def _spectrum_log(frames: np.ndarray, spec: FrontendSpec, taps: dict | None) -> np.ndarray:
    """frames (..., L) int64 -> log2 band energies in Q8 (int64), the stages into ``taps``."""
    t = spec.tables
    windowed = (frames * t.window.astype(np.int64) + (1 << 14)) >> 15
    _, shift = autoscale(windowed)
    padded = np.zeros(windowed.shape[:-1] + (spec.fft_size,), dtype=np.int64)
    padded[..., :spec.frame_length] = windowed
    re, im = fft_int(padded, shift, t)
    power = re * re + im * im
    energy = filterbank(power, t)
    logs = log2_q8(energy) - (2 * shift)[..., None] * (1 << LOG_FRAC_BITS)
    if taps is not None:
        taps.update(window=windowed, shift=shift, fft=np.stack([re, im], axis=-1), filterbank=energy, log=logs)
    return logs


def _trunc_div(a: np.ndarray, d: int) -> np.ndarray:
    """C's integer division (toward zero)."""
    return np.sign(a) * (np.abs(a) // d)


def compute_int(samples: np.ndarray, spec: FrontendSpec, taps: dict | None = None) -> np.ndarray:
    """int16 samples (..., n_samples) -> int32 features (..., *feature_shape), bit-exact with the C.

    ``taps`` (a dict) receives each stage's integers (window, shift, fft, filterbank, log)."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        raise FrontendError(f"the front end takes int16 samples, not {x.dtype}")
    if x.shape[-1] != spec.n_samples:
        raise FrontendError(f"the front end takes {spec.n_samples} samples per inference, not {x.shape[-1]}")
    x = x.astype(np.int64)
    if spec.kind == "audio":
        logs = _spectrum_log(_frames(x, spec), spec, taps)
        return logs.astype(np.int32)[..., None]
    axes = x.reshape(x.shape[:-1] + (spec.window_samples, IMU_AXES))
    axes = np.moveaxis(axes, -1, -2)  # (..., 3, window_samples)
    fr = _frames(axes, spec)  # (..., 3, frames, L)
    L = spec.frame_length
    mean = _trunc_div(fr.sum(axis=-1), L)
    mad = _trunc_div(np.abs(fr - mean[..., None]).sum(axis=-1), L)
    logs = _spectrum_log(fr - mean[..., None], spec, taps)  # (..., 3, frames, bands)
    stats = np.stack([mean, fr.min(axis=-1), fr.max(axis=-1), mad], axis=-1)  # (..., 3, frames, 4)
    per_axis = np.concatenate([stats, logs], axis=-1)  # (..., 3, frames, 4 + bands)
    out = np.moveaxis(per_axis, -3, -2)  # (..., frames, 3, 4 + bands)
    return out.reshape(out.shape[:-2] + (spec.features_per_frame,)).astype(np.int32)


def compute_float(samples: np.ndarray, spec: FrontendSpec) -> np.ndarray:
    """The float reference (numpy's FFT, float64 windows and weights): quality figures only."""
    x = np.asarray(samples, dtype=np.float64)
    t = spec.tables
    w = t.window.astype(np.float64) / 32768.0
    wts = t.weights.astype(np.float64)  # the Q12 integers, as the fixed point sums them

    def spec_log(frames):
        # The fixed point takes log2 of sum(|rfft(x * w) / N|^2 * weight_q12) after scaling the
        # frame by 2^s and subtracts 2s: the same quantity, so the two agree in Q8 log2 units.
        X = np.fft.rfft(frames * w, n=spec.fft_size) / spec.fft_size
        p = np.abs(X) ** 2
        e = np.stack([(p[..., a:a + ln] * wts[o:o + ln]).sum(axis=-1) for a, ln, o in
                      zip(t.band_start.astype(int), t.band_len.astype(int), t.band_offset.astype(int))], axis=-1)
        return np.log2(np.maximum(e, 1e-30)) * (1 << LOG_FRAC_BITS)

    if spec.kind == "audio":
        return spec_log(_frames(x, spec))[..., None]
    axes = np.moveaxis(x.reshape(x.shape[:-1] + (spec.window_samples, IMU_AXES)), -1, -2)
    fr = _frames(axes, spec)
    mean = fr.mean(axis=-1)
    stats = np.stack([mean, fr.min(axis=-1), fr.max(axis=-1), np.abs(fr - mean[..., None]).mean(axis=-1)], -1)
    per_axis = np.concatenate([stats, spec_log(fr - mean[..., None])], axis=-1)
    out = np.moveaxis(per_axis, -3, -2)
    return out.reshape(out.shape[:-2] + (spec.features_per_frame,))


def check_samples(samples: np.ndarray, spec: FrontendSpec, what: str = "--data") -> np.ndarray:
    """Raw input from a user: finite, integral, int16-range, ``n_samples`` per row -> int16 (rows, n)."""
    x = np.asarray(samples)
    if x.dtype.kind not in "iuf":
        raise FrontendError(f"{what}: raw samples must be numbers, not {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise FrontendError(f"{what} holds NaN or Inf samples; raw input must be finite int16 values")
    if x.ndim == 1:
        x = x[None, :]
    x = x.reshape(len(x), -1)
    if x.shape[1] != spec.n_samples:
        raise FrontendError(f"{what}: each row must hold {spec.n_samples} samples ({spec.window_samples} at "
                            f"{spec.sample_rate} Hz x {spec.channels} channel(s)), not {x.shape[1]}")
    if x.dtype.kind == "f" and (np.round(x) != x).any():
        raise FrontendError(f"{what}: raw samples must be whole int16 values (found fractions)")
    if x.size and (x.min() < -32768 or x.max() > 32767):
        raise FrontendError(f"{what}: raw samples must lie in -32768..32767 (int16)")
    return x.astype(np.int16)


def check_model_input(spec: FrontendSpec, input_shape: tuple[int, ...], what: str = "--frontend") -> None:
    """The model's input (batch dropped) must take this stage's features."""
    shape = tuple(int(d) for d in input_shape)
    if shape and shape[0] == 1 and len(shape) == len(spec.feature_shape) + 1:
        shape = shape[1:]
    if int(np.prod(shape)) != int(np.prod(spec.feature_shape)) or \
            tuple(d for d in shape if d != 1) != tuple(d for d in spec.feature_shape if d != 1):
        shown = shape[1:] if len(shape) > 1 and shape[0] == 1 else shape  # without the batch dimension
        raise FrontendError(f"{what} gives features of shape {spec.feature_shape}, but the model's input is "
                            f"{shown}; give the front end the model was trained with")


# ---- feature units -> the model's int8 input -----------------------------------------------

@dataclass(frozen=True)
class Requant:
    multiplier: int  # < 2^31
    shift: int  # right shift, 1..62
    zero_point: int


def requant_params(input_scale: float, input_zero_point: int) -> Requant:
    """q = zp + round(v / 256 / scale), as an integer multiply and rounding right shift."""
    real = 1.0 / ((1 << FEATURE_FRAC_BITS) * float(input_scale))
    if not math.isfinite(real) or real <= 0:
        raise FrontendError(f"the model's input scale {input_scale!r} cannot take front-end features")
    shift = 0
    while real * (1 << (shift + 1)) < (1 << 31) and shift < 62:
        shift += 1
    mult = int(round(real * (1 << shift)))
    if mult >= 1 << 31:
        mult >>= 1
        shift -= 1
    if shift < 1:
        raise FrontendError(f"the model's input scale {input_scale!r} is too small for front-end features")
    return Requant(mult, shift, int(input_zero_point))


def requantize(features: np.ndarray, rq: Requant) -> np.ndarray:
    v = features.astype(np.int64)
    q = ((v * rq.multiplier + (np.int64(1) << (rq.shift - 1))) >> rq.shift) + rq.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def to_model_float(features: np.ndarray) -> np.ndarray:
    """Feature units -> the float the model is trained on."""
    return features.astype(np.float32) / float(1 << FEATURE_FRAC_BITS)


KWS_SPEC = FrontendSpec()
IMU_SPEC = FrontendSpec(kind="imu", sample_rate=100, window_samples=200, frame_length=50, frame_step=25,
                        fft_size=64, window="hann", bands=4, lower_hz=0.0, upper_hz=50.0)


def features_count(spec: FrontendSpec) -> int:
    """int32 features per inference (the C's tg_fe_feature_count)."""
    return spec.n_frames * spec.features_per_frame


STAGES = ("window", "shift", "fft", "filterbank", "log")
# Where the C's instructions go (-DTG_FE_PROFILE, benchmarks/bench_frontend.py); "power" is the real split
# and the power spectrum, "other" the framing around the stages.
PROFILE_STAGES = ("window", "fft", "power", "filterbank", "log", "other")


def first_divergent_stage(board: dict, host: dict) -> str | None:
    """The first front-end stage (in pipeline order) whose integers differ between two tap sets, or None."""
    for name in STAGES:
        if name in board and name in host and not np.array_equal(np.asarray(board[name]), np.asarray(host[name])):
            return name
    return None


# ---- a project's front end: checked against the model, its raw verification vectors -------------

MAX_RAW_PAYLOAD = 0xFFFF  # INFER_RAW carries one inference's samples in one protocol frame


def for_model(data: dict, input_shape, input_scale: float, input_zero_point: int,
              what: str = "--frontend") -> tuple[FrontendSpec, Requant]:
    """The project's spec (from its JSON) checked against the model's input: shape, int8 scale, and
    that one inference's samples fit a protocol frame; one line (exit 2) otherwise."""
    spec = spec_from_json(data, what)
    check_model_input(spec, tuple(input_shape), what)
    if spec.n_samples * 2 > MAX_RAW_PAYLOAD:
        raise FrontendError(f"{what}: {spec.n_samples} samples per inference do not fit the board's protocol "
                            f"frame ({MAX_RAW_PAYLOAD // 2} at most); shorten window_samples")
    return spec, requant_params(input_scale, input_zero_point)


def synthetic_raw(spec: FrontendSpec, count: int, seed: int) -> np.ndarray:
    """``count`` seeded raw inputs for a model without raw test data: silence, full-scale extremes,
    then noise and tones at amplitudes from 2^4 to 2^14 (every autoscale shift gets exercised)."""
    rng = np.random.default_rng(seed)
    n = spec.n_samples
    out = np.zeros((count, n), dtype=np.int16)
    t = np.arange(n, dtype=np.float64)
    for i in range(count):
        if i == 0:
            continue  # silence
        if i == 1:
            out[i] = np.where(np.arange(n) % 64 < 32, 32767, -32768)
            continue
        amp = 2.0 ** rng.uniform(4, 14)
        x = rng.normal(0, amp / 3, n) + amp * np.sin(2 * np.pi * rng.uniform(0.001, 0.45) * t)
        out[i] = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return out


def raw_vectors(spec: FrontendSpec, rq: Requant, raw: np.ndarray | None, count: int, seed: int,
                input_shape) -> dict[str, np.ndarray]:
    """{"raw_inputs": int16 (N, n_samples), "raw_features": the twin's int8 model input (N, *input_shape)}:
    a recipe's raw test clips (the first ``count``), else :func:`synthetic_raw`."""
    x = check_samples(raw[:count], spec, "the raw test samples") if raw is not None and len(raw) \
        else synthetic_raw(spec, max(int(count), 1), seed)
    feats = requantize(compute_int(x, spec), rq)
    return {"raw_inputs": x, "raw_features": feats.reshape((len(x),) + tuple(int(d) for d in input_shape))}


def describe_feature(spec: FrontendSpec, index: int) -> str:
    """Where flat feature ``index`` comes from: 'frame 3, band 12' / 'frame 2, axis y, mad'."""
    f, j = divmod(int(index), spec.features_per_frame)
    if spec.kind == "audio":
        return f"frame {f}, mel band {j}"
    axis, k = divmod(j, len(IMU_STATS) + spec.bands)
    what = IMU_STATS[k] if k < len(IMU_STATS) else f"band {k - len(IMU_STATS)} energy"
    return f"frame {f}, axis {'xyz'[axis]}, {what}"


def feature_stage(spec: FrontendSpec, index: int) -> str:
    """The last pipeline stage that made feature ``index`` ('log' for spectra; 'stats' for imu statistics)."""
    if spec.kind == "imu" and int(index) % spec.features_per_frame % (len(IMU_STATS) + spec.bands) < len(IMU_STATS):
        return "stats"
    return "log"
