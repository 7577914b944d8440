"""The one alignment rule for arenas and the buffers in them.

TFLM aligns tensor buffers to 16 bytes in its arena (MicroArenaBufferAlignment), and
the compiled runtime keeps the same rule so CMSIS-style word and SIMD loads never
straddle; the TFLM arena size tinygen recommends is rounded the same way.
"""

ARENA_ALIGN = 16


def align_up(n: int, to: int = ARENA_ALIGN) -> int:
    """``n`` rounded up to a multiple of ``to``."""
    return (n + to - 1) // to * to
