"""Which front-end stage diverged (``verify --layers`` on a raw-signal project, docs/frontend.md).

When the board's features differ from the twin's, the frame that made the first differing feature is
sent back to the board with ``FE_TAPS`` (tinygen.common.protocol): the board runs that one frame through
its own C stages and returns each stage's integers (window, autoscale shift, FFT, filter bank, log).
The same frame goes through tinygen's fixed-point twin (``compute_int(..., taps=)``), and the first stage
whose integers differ is named, in pipeline order.  If every stage matches on the host's frame, what is
left is what the frame request skips: the framing (imu: the mean removal) or the requantization to int8
(``framing_or_requantize``).
IMU statistics (mean/min/max/mad) are not a spectral stage: a differing statistic is named directly.

Input: the open link, the project's spec and the first divergence; output: a plain dict (JSON-ready).
"""

from __future__ import annotations

import numpy as np

from tinygen.common.protocol import FE_TAPS_ORDER, FRAME_OVERHEAD, Opcode, Status, describe_status
from tinygen.device.framing import BoardFault

# What each stage is called in a sentence (the keys are tinygen.intake.frontend.STAGES and the rest).
STAGE_WORDS = {"framing_or_requantize": "the framing (imu: the mean removal) or the requantization to int8",
               "window": "the window",
               "shift": "the automatic scaling (shift)", "fft": "the FFT", "filterbank": "the filter bank",
               "log": "the log", "requantize": "the requantization to the model's int8 input",
               "stats": "the IMU statistics (mean/min/max/mad)"}


def tap_words(spec) -> dict[str, int]:
    """int32 words per stage in an FE_TAPS reply (filterbank sums are u64: 2 words each)."""
    return {"filterbank": 2 * spec.bands, "log": spec.bands, "window": spec.frame_length, "shift": 1,
            "fft": 2 * (spec.fft_size // 2 + 1)}


def locate(spec, element: int) -> tuple[int, int | None, bool]:
    """Flat feature index -> (frame, axis or None for audio, is an imu statistic)."""
    from tinygen.intake.frontend import IMU_STATS

    f, j = divmod(int(element), spec.features_per_frame)
    if spec.kind == "audio":
        return f, None, False
    axis, k = divmod(j, len(IMU_STATS) + spec.bands)
    return f, axis, k < len(IMU_STATS)


def host_frame(samples: np.ndarray, spec, frame: int, axis: int | None) -> np.ndarray:
    """The frame tg_fe_spectrum_frame takes (int32): audio the samples; imu one axis minus its mean (C division)."""
    x = np.asarray(samples, dtype=np.int64).reshape(-1)
    start, L = frame * spec.frame_step, spec.frame_length
    if axis is None:
        return x[start:start + L].astype(np.int32)
    fr = x.reshape(spec.window_samples, 3)[start:start + L, axis]
    s = int(fr.sum())
    mean = (abs(s) // L) * (1 if s >= 0 else -1)
    return (fr - mean).astype(np.int32)


def host_taps(samples: np.ndarray, spec, frame: int, axis: int | None) -> dict[str, np.ndarray]:
    """The twin's stages for one frame (tinygen.intake.frontend.compute_int with taps)."""
    from tinygen.intake.frontend import compute_int

    taps: dict = {}
    compute_int(np.asarray(samples, dtype=np.int16)[None, :], spec, taps=taps)
    idx = (0, frame) if axis is None else (0, axis, frame)
    return {k: np.asarray(v)[idx] for k, v in taps.items()}


def parse_taps(payload: bytes, spec) -> dict[str, np.ndarray]:
    words = tap_words(spec)
    want = 4 * sum(words.values())
    if len(payload) != want:
        raise BoardFault(f"the board's FE_TAPS reply has {len(payload)} bytes, not {want} for this project's "
                         "front end (a board fault, not your input): the firmware is not this project's")
    out, off = {}, 0
    for name in FE_TAPS_ORDER:
        n = words[name]
        if name == "filterbank":
            out[name] = np.frombuffer(payload, dtype="<u8", count=n // 2, offset=off).astype(np.uint64)
        else:
            out[name] = np.frombuffer(payload, dtype="<i4", count=n, offset=off).astype(np.int64)
        off += 4 * n
    out["shift"] = out["shift"][0]
    out["fft"] = out["fft"].reshape(-1, 2)
    return out


def board_taps(link, frame: np.ndarray, spec, max_frame: int) -> dict[str, np.ndarray] | str:
    """FE_TAPS for one frame; the stages, or why the board could not give them (a sentence)."""
    payload = np.ascontiguousarray(frame, dtype="<i4").tobytes()
    if max_frame and len(payload) + FRAME_OVERHEAD > max_frame:
        return "the board's receive buffer cannot hold one frame of int32 (FE_TAPS)"
    want = 4 * sum(tap_words(spec).values())
    reply = link.request(Opcode.FE_TAPS, payload, reply_bytes=want)
    if reply.status != Status.OK:
        return f"the board cannot report per-stage results (FE_TAPS: {describe_status(reply.status)})"
    return parse_taps(reply.payload, spec)


def first_difference(board: dict, host: dict, name: str) -> dict:
    b = np.asarray(board[name], dtype=np.int64).reshape(-1)
    h = np.asarray(host[name], dtype=np.int64).reshape(-1)
    d = np.abs(b - h)
    i = int(np.flatnonzero(d)[0])
    return {"index": i, "board": int(b[i]), "host": int(h[i]), "differing": int(np.count_nonzero(d)),
            "of": int(d.size), "max_abs_diff": int(d.max())}


def name_stage(link, spec, samples: np.ndarray, element: int, max_frame: int) -> dict:
    """The stage that made feature ``element`` of ``samples`` differ: {"stage", "frame", "axis", ...}."""
    from tinygen.intake.frontend import STAGES, first_divergent_stage

    frame, axis, is_stat = locate(spec, element)
    found: dict = {"frame": frame, **({"axis": "xyz"[axis]} if axis is not None else {})}
    if is_stat:
        return {**found, "stage": "stats", "how": "a statistic, computed from the frame's samples directly"}
    board = board_taps(link, host_frame(samples, spec, frame, axis), spec, max_frame)
    if isinstance(board, str):
        return {**found, "stage": None, "how": board}
    host = host_taps(samples, spec, frame, axis)
    stage = first_divergent_stage(board, host)
    if stage is None:  # every C stage is right on the host's frame: before them or after them
        return {**found, "stage": "framing_or_requantize", "matched": list(STAGES),
                "how": "window, shift, FFT, filter bank and log match on the host's frame"}
    return {**found, "stage": stage, "matched": list(STAGES[:STAGES.index(stage)]),
            "first_difference": first_difference(board, host, stage)}


def sentence(named: dict) -> str:
    """'the FFT, the first stage that differs on frame 3 (7 of 514 values, first at index 9: board 12, host
    twin 10; window, shift match)', or why no stage could be named."""
    where = f"frame {named['frame']}" + (f", axis {named['axis']}" if "axis" in named else "")
    if named.get("stage") is None:
        return f"the spectral stages (window, FFT, filter bank, log; not named per stage: {named['how']})"
    what = STAGE_WORDS.get(named["stage"], named["stage"])
    if "first_difference" in named:
        fd = named["first_difference"]
        ok = (", ".join(named["matched"]) + " match") if named["matched"] else "no stage before it"
        return (f"{what}, the first stage that differs on {where} ({fd['differing']} of {fd['of']} values, first "
                f"at index {fd['index']}: board {fd['board']}, host twin {fd['host']}; {ok})")
    return f"{what} ({where}: {named['how']})"
