"""A board running a tinygen project, held open for a test session.

    with TinygenBoard.connect("tinygen-qemu-m4-sine", port="emulated") as board:
        result = board.infer(np.array([[1.57]], np.float32))   # float in: quantized as TFLite does
        batch = board.infer_batch(reference.inputs)              # int8 in: sent as they are

``port``: "emulated" (QEMU booted on the project's firmware, built first), "auto" (USB VID/PID),
a device path or rfc2217://HOST:PORT; or ``place``: a labgrid place.  The board must answer
HELLO with this project's model, else connecting fails: a test must never pass against a board
that runs something else.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygen import api
from tinygen.analysis.vectors import dequantize, quantize_input
from tinygen.common.errors import TinygenError


@dataclass
class Inference:
    """One inference: the board's int8 ``output``, its dequantized ``value``, and the time it took."""

    input: np.ndarray
    output: np.ndarray
    value: np.ndarray
    ticks: int
    board: TinygenBoard = field(repr=False)


@dataclass
class Batch:
    """Several inferences: ``inputs``/``outputs`` (N x shape, int8), ``values`` (float), ``ticks`` (N)."""

    inputs: np.ndarray
    outputs: np.ndarray
    values: np.ndarray
    ticks: list[int]
    board: TinygenBoard = field(repr=False)

    def latency(self) -> dict:
        """The verify report's timing fields for these inferences (instructions on an emulated board;
        µs, and cycles where the board counts them, on a real one)."""
        return self.board.latency(self.ticks)


def _firmware_up_to_date(project: api.Project) -> bool:
    """The ELF is newer than every file of the project: skip pio's no-op build (seconds per session)."""
    from tinygen.device.pio_build import firmware_elf

    elf = firmware_elf(project.path, project.board.id)
    if not elf.is_file():
        return False
    built = elf.stat().st_mtime
    for f in project.path.rglob("*"):
        rel = f.relative_to(project.path).parts
        if rel[0] not in (".pio", "reports") and f.is_file() and f.stat().st_mtime > built:
            return False
    return True


class TinygenBoard:
    """A connected board; see the module docstring.  Use :meth:`connect`, then :meth:`close`."""

    def __init__(self, project: api.Project, port: str, manifest: dict, link, info, stack: ExitStack):
        self.project = project
        self.port = port
        self.manifest = manifest
        self.info = info
        self._link = link
        self._stack = stack

    @classmethod
    def connect(cls, project: api.Project | str | Path, port: str | None = None, *, place: str | None = None,
                coordinator: str | None = None, timeout: float = 10.0, retries: int = 3,
                progress=None) -> TinygenBoard:
        from tinygen.device.emulator import qemu_for_project
        from tinygen.device.ports import resolve_port
        from tinygen.device.serial_link import DeviceLink
        from tinygen.verification.verify import check_hello, load_project

        project = project if isinstance(project, api.Project) else api.Project.load(project)
        if place is not None and port is not None:
            raise TinygenError("give either a port or a labgrid place, not both")
        port = port or ("emulated" if project.emulated else "auto")
        man, _, _ = load_project(project.path)
        with ExitStack() as stack:
            if place is not None:
                from tinygen.device.farm import place_port

                where = stack.enter_context(place_port(place, coordinator))
            elif port == "emulated":
                if not project.emulated:
                    raise TinygenError(f"port 'emulated': board {project.board.id} is not emulated; "
                                       "pass its serial port or 'auto'")
                if not _firmware_up_to_date(project):
                    project.build_firmware(progress)
                where = stack.enter_context(qemu_for_project(project.path, project.board)).port
            else:
                where = resolve_port(port, project.board)
            link = stack.enter_context(DeviceLink(where, man["serial"]["baud"], timeout=timeout, retries=retries,
                                                  open_delay=project.board.serial.open_delay_s))
            info = link.hello()
            check_hello(info, man, where)
            return cls(project, where, man, link, info, stack.pop_all())

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the link, stop QEMU / release the labgrid place (whatever connect started)."""
        self._stack.close()

    def __enter__(self) -> TinygenBoard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what the board runs ----------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.info.input_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.info.output_shape)

    @property
    def name(self) -> str:
        return self.project.board.id

    def quantize(self, x) -> np.ndarray:
        """Float input -> int8 as TFLite's QUANTIZE does, with the model's input scale and zero point."""
        i = self.manifest["input"]
        return quantize_input(np.asarray(x, dtype=np.float32), i["scale"], i["zero_point"])

    def dequantize(self, q) -> np.ndarray:
        o = self.manifest["output"]
        return dequantize(q, o["scale"], o["zero_point"])

    def as_input(self, x) -> np.ndarray:
        """An int8 input tensor from int8 (as is) or float (quantized) data of the input's size."""
        arr = np.asarray(x)
        if arr.dtype.kind == "f":
            arr = self.quantize(arr)
        elif arr.dtype != np.int8:
            raise TinygenError(f"input data is {arr.dtype}; give int8 (sent as is) or float (quantized)")
        if arr.size != int(np.prod(self.input_shape)):
            raise TinygenError(f"input has shape {arr.shape}, the model takes {list(self.input_shape)}")
        return arr.reshape(self.input_shape)

    # -- requests ---------------------------------------------------------------------------------

    def infer(self, x) -> Inference:
        q = self.as_input(x)
        out, ticks = self._link.infer(q)
        return Inference(q, out, self.dequantize(out), int(ticks), self)

    def infer_batch(self, xs) -> Batch:
        """One inference per row of ``xs`` (N x input shape, int8 or float)."""
        rows = [self.as_input(x) for x in xs]
        if not rows:
            raise TinygenError("infer_batch got no inputs")
        done = [self._link.infer(q) for q in rows]
        outs = np.stack([o for o, _ in done])
        return Batch(np.stack(rows), outs, self.dequantize(outs), [int(t) for _, t in done], self)

    def stats(self) -> dict[str, int]:
        """The firmware's counters (GET_STATS)."""
        return self._link.get_stats()

    def reset_stats(self) -> None:
        self._link.reset_stats()

    def latency(self, ticks: list[int]) -> dict:
        from tinygen.verification.verify import latency

        emu = self.project.board.emulator
        return latency(ticks, self.info.tick_hz, emu.instructions_per_tick if emu else None, self.project.board.clock_hz)


class Reference:
    """What the board's outputs are compared with: the tflite_micro interpreter on the project's model.

    ``inputs``/``outputs`` are the reference vectors stored in the project at build time (``labels``
    and ``float_outputs`` where the recipe or the user's data gave them); calling the object runs
    tflite_micro on new int8 (or float: quantized) inputs, N x input shape."""

    def __init__(self, project: api.Project | str | Path):
        from tinygen.verification.verify import load_project

        self.project = project if isinstance(project, api.Project) else api.Project.load(project)
        self.manifest, self._model, vectors = load_project(self.project.path)
        self.inputs = vectors["inputs"]
        self.outputs = vectors["outputs"]
        self.labels = vectors.get("labels")
        self.float_outputs = vectors.get("float_outputs")

    def quantize(self, x) -> np.ndarray:
        i = self.manifest["input"]
        return quantize_input(np.asarray(x, dtype=np.float32), i["scale"], i["zero_point"])

    def __call__(self, xs) -> np.ndarray:
        from tinygen.analysis.reference import run_reference

        arr = np.asarray(xs)
        if arr.dtype.kind == "f":
            arr = self.quantize(arr)
        shape = tuple(self.manifest["input"]["shape"])
        if arr.size % max(1, int(np.prod(shape))) or arr.dtype != np.int8:
            raise TinygenError(f"reference inputs must be int8 or float, N x {list(shape)}; got {arr.dtype} "
                               f"{arr.shape}")
        return run_reference(self._model, arr.reshape((-1,) + shape), self.manifest["name"],
                             arena_bytes=self.manifest["arena"]["recommended_bytes"])
