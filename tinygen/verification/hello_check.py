"""The one check of a board's HELLO against the project it should run (tinygen.json).

HELLO (:data:`tinygen.common.protocol.HELLO_FIELDS`) says what the firmware was built for: the
model's hash, the runtime and its arena, the input and output tensors (dtype, shape, scale, zero
point, bytes) and the largest request frame it accepts.  Every one of those the project knows is
compared here, before a single vector is sent: a board whose firmware declares INT32 outputs for
an int8 model, another shape or another quantization would otherwise have its answers reinterpreted
(an int32 cast to int8 wraps around) and reported against the wrong reference.

A mismatch is the board's fault, not the user's input: :class:`VerificationFailed` (exit 5), one
line naming each field with the board's value and the project's.  ``protocol_version`` is checked
by :meth:`DeviceLink.hello` itself; ``tick_hz`` has no project value (the firmware's timer), and 0
only makes the latency unknown (:func:`tinygen.verification.verify.latency`); ``reserved`` is
ignored, as future firmware may use it.
"""

from __future__ import annotations

import numpy as np

from tinygen.common.errors import VerificationFailed
from tinygen.common.escape import terminal
from tinygen.common.protocol import DTYPE_NUMPY, FRAME_OVERHEAD, MIN_RX_PAYLOAD, DType

_MAX_LISTED = 4  # mismatches named in the one line; the rest are counted


def _dtype_name(code: int) -> str:
    try:
        return DTYPE_NUMPY[DType(code)]
    except (ValueError, KeyError):
        return f"unknown type code {code}"


def _same_f32(board: float, project: float) -> bool:
    """HELLO carries float32; the manifest the same number as a double."""
    return bool(np.float32(board) == np.float32(project))


def hello_mismatches(hello, man: dict) -> list[str]:
    """Every HELLO field that disagrees with the manifest, as ``"FIELD is X on the board, Y in the project"``."""
    found: list[str] = []

    def differ(field: str, board, project) -> None:
        found.append(f"{field} is {board} on the board, {project} in the project")

    for side in ("input", "output"):
        want = man[side]
        dtype_code = getattr(hello, f"{side}_dtype")
        if _dtype_name(dtype_code) != want["dtype"]:
            differ(f"{side}_dtype", _dtype_name(dtype_code).upper(), str(want["dtype"]).upper())
        shape = tuple(int(d) for d in getattr(hello, f"{side}_shape"))
        if shape != tuple(int(d) for d in want["shape"]):
            differ(f"{side}_shape", list(shape), list(want["shape"]))
        scale = getattr(hello, f"{side}_scale")
        if not _same_f32(scale, want["scale"]):
            differ(f"{side}_scale", f"{scale:.9g}", f"{float(want['scale']):.9g}")
        zp = getattr(hello, f"{side}_zero_point")
        if int(zp) != int(want["zero_point"]):
            differ(f"{side}_zero_point", zp, want["zero_point"])
        want_bytes = int(np.prod(want["shape"], dtype=np.int64)) * np.dtype(want["dtype"]).itemsize
        got_bytes = getattr(hello, f"{side}_bytes")
        if got_bytes != want_bytes:
            differ(f"{side}_bytes", got_bytes, want_bytes)
    if hello.runtime_name != man.get("runtime", hello.runtime_name):
        differ("runtime_name", repr(terminal(hello.runtime_name)), repr(man["runtime"]))
    arena = int(hello.arena_bytes)
    if man.get("runtime") == "compiled" and man.get("compiled_arena_bytes") is not None:
        if arena != int(man["compiled_arena_bytes"]):
            differ("arena_bytes", arena, man["compiled_arena_bytes"])
    elif man.get("runtime") == "tflm" and isinstance(man.get("arena"), dict):
        # TFLM reports the bytes its interpreter used, at most the arena the project gave it
        limit = int(man["arena"]["recommended_bytes"])
        if arena > limit:
            differ("arena_bytes", arena, f"at most {limit}")
    in_bytes = int(np.prod(man["input"]["shape"], dtype=np.int64)) * np.dtype(man["input"]["dtype"]).itemsize
    fe = man.get("frontend")  # INFER_RAW's int16 samples (tinygen.intake.frontend) may be the longest request
    raw_bytes = _frontend_rx_bytes(fe) if isinstance(fe, dict) else 0
    want_frame = FRAME_OVERHEAD + max(in_bytes, MIN_RX_PAYLOAD, raw_bytes)
    if int(hello.max_frame) != want_frame:
        differ("max_frame", hello.max_frame, want_frame)
    return found


def check_hello(hello, man: dict, port: str) -> None:
    """Raise VerificationFailed (exit 5) unless the board's HELLO describes exactly this project's firmware."""
    shown = terminal(port)
    want = man["model_sha256"][: 2 * len(hello.model_hash)]
    got = hello.model_hash.hex()
    if got != want:
        raise VerificationFailed(
            f"the board on {shown} runs a different model (hash {got}) than the project "
            f"(sha256 {want}…); flash this project first: tinygen flash --project DIR")
    if not hello.init_ok:
        raise VerificationFailed(f"the board on {shown} failed to start its {terminal(hello.runtime_name)} runtime: "
                                 f"{hello.init_status_name}; rebuild with a larger arena or check the log")
    found = hello_mismatches(hello, man)
    if not found:
        return
    listed = "; ".join(found[:_MAX_LISTED]) + (f"; and {len(found) - _MAX_LISTED} more" if len(found) > _MAX_LISTED
                                                else "")
    raise VerificationFailed(
        f"the board on {shown} does not describe this project's firmware (a board fault, not your input; "
        f"no vector was sent): {listed}; rebuild and flash this project (tinygen flash --project DIR), "
        f"or fix the board's firmware")


def _frontend_rx_bytes(fe: dict) -> int:
    """What a front end adds to the receive buffer: INFER_RAW's samples, or FE_TAPS' work if larger."""
    from tinygen.codegen.protocol_header import fe_taps_buffer_bytes
    from tinygen.intake.frontend import FrontendError, spec_from_json

    try:
        spec = spec_from_json(fe, "tinygen.json's frontend")
    except FrontendError:
        return 0  # a broken definition: max_frame is then compared with the model's input alone
    return max(2 * spec.n_samples, fe_taps_buffer_bytes(spec.frame_length, spec.fft_size, spec.bands))
