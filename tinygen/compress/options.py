"""What a build asks of compression: :class:`CompressOptions`, the value ``tinygen.build(...,
compress=CompressOptions(...))`` takes and the CLI fills from ``--prune``, ``--qat``, ``--distill``
and the ``--fit*`` flags (docs/compression.md).  A plain value: nothing is checked or imported
here; the conductor (:func:`tinygen.api.build`) checks it before any training and turns it into
the search's working options (:class:`tinygen.compress.fit.Options`)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HEADROOM = 0.10  # share of the board's flash and RAM --fit leaves free


@dataclass(frozen=True)
class CompressOptions:
    """Compression before the int8 conversion; the default compresses nothing.

    ``prune``: a ratio of every prunable layer's filters/units to remove, {layer name: ratio}, or the
    CLI's text ("0.5", "conv2d=0.5,dense=0.25"); ``qat``: quantization-aware training; ``distill``:
    a student this wide (0 < width <= 1); ``fit``: search the smallest pruning or student that fits
    the board's flash and RAM (or ``fit_board``'s, or ``fit_budget`` {"flash_bytes", "ram_bytes"}),
    leaving ``fit_headroom`` free, trying the pruning ratios ``fit_ratios`` and students of
    ``fit_widths`` (() tries none); ``fit_max_instructions`` (or ``fit_latency_ms`` at the fit
    board's clock) bounds the instructions per inference measured on an emulated core; ``epochs``
    overrides the fine-tuning epochs per step ({"prune"|"qat"|"distill": epochs})."""
    prune: float | dict | str | None = None
    qat: bool = False
    distill: float | None = None
    fit: bool = False
    fit_board: str | None = None
    fit_budget: dict | None = None
    fit_headroom: float = DEFAULT_HEADROOM
    fit_ratios: tuple | None = None  # None: tinygen.compress.fit.FIT_RATIOS
    fit_widths: tuple | None = None  # None: tinygen.compress.fit.FIT_WIDTHS
    fit_max_instructions: int | None = None
    fit_latency_ms: float | None = None
    epochs: dict | None = None

    @property
    def active(self) -> bool:
        """Does the build compress at all (train before converting)?"""
        return bool(self.prune is not None or self.qat or self.distill is not None or self.fit)
