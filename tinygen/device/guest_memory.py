"""What a firmware ELF occupies, and how deep its stack went on the emulator.

:func:`elf_footprint` reads a 32-bit little-endian ELF's section and symbol tables in Python
(no target binutils, so an Arm and a RISC-V ELF are read the same way): flash is every
allocated section with contents (code, constants, the .data image), static RAM every
allocated writable one (.data + .bss, which holds the arena and the I/O buffers).

:func:`stack_high_water` asks a running QEMU, through its monitor socket, for the stack
window's bytes (``xp``) and finds the lowest word the firmware's reset code painted
(``TG_STACK_PAINT`` in firmware/hal/mps2/startup_mps2.c) that no longer holds the paint.
A firmware without the ``_tg_stack_paint_start`` symbol gets None.
"""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path

from tinygen.common.errors import ToolFailure

STACK_PAINT = 0x5A5AA5A5
_SHF_WRITE, _SHF_ALLOC = 0x1, 0x2
_SHT_NOBITS, _SHT_SYMTAB = 8, 2


def _elf32(path: Path) -> tuple[bytes, list[tuple]]:
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise ToolFailure(f"{path} is not a 32-bit little-endian ELF")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    # (name offset, type, flags, addr, offset, size, link)
    sections = [struct.unpack_from("<IIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = sections[shstrndx]
    named = []
    for sec in sections:
        start = strtab[4] + sec[0]
        name = data[start:data.index(b"\0", start)].decode("ascii", "replace")
        named.append((name,) + sec)
    return data, named


def elf_footprint(path: Path) -> dict:
    """{"flash_bytes", "static_ram_bytes", "sections": {name: size}, "symbols": {name: value}}."""
    data, sections = _elf32(path)
    sizes, flash, ram, symbols = {}, 0, 0, {}
    for name, _n, typ, flags, _addr, off, size, link in sections:
        if flags & _SHF_ALLOC and size:
            sizes[name] = size
            if typ != _SHT_NOBITS:
                flash += size  # code, constants and the image .data is copied from
            if flags & _SHF_WRITE:
                ram += size
        if typ == _SHT_SYMTAB:
            names = sections[link]
            for i in range(size // 16):
                st_name, value = struct.unpack_from("<II", data, off + i * 16)
                if st_name:
                    start = names[5] + st_name
                    symbols[data[start:data.index(b"\0", start)].decode("ascii", "replace")] = value
    return {"flash_bytes": flash, "static_ram_bytes": ram, "sections": sizes, "symbols": symbols}


_XP_LINE = re.compile(r"^([0-9a-f]+):((?:\s+0x[0-9a-f]{8})+)\s*$", re.M)


def _monitor(sock_path: str, command: str, timeout: float = 30.0) -> str:
    """Run one HMP command; return what the monitor printed up to its next prompt."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        got = b""
        while b"(qemu)" not in got:  # the banner and first prompt
            chunk = s.recv(4096)
            if not chunk:
                raise ToolFailure("QEMU's monitor closed its socket")
            got += chunk
        s.sendall(command.encode() + b"\n")
        got = b""
        while b"\n(qemu)" not in got.replace(b"\r", b""):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return got.decode("ascii", "replace").replace("\r", "")


def read_words(sock_path: str, addr: int, count: int) -> list[int]:
    """``count`` 32-bit words of guest memory from ``addr``, read with ``xp``: it goes through the
    CPU's view, so it also reads the Secure-only RAM of the TrustZone boards (``pmemsave`` reads
    zeros there, its accesses being Non-secure)."""
    text = _monitor(sock_path, f"xp /{count}xw {addr:#x}")
    words: dict[int, int] = {}
    for m in _XP_LINE.finditer(text):
        base = int(m.group(1), 16)
        for i, w in enumerate(m.group(2).split()):
            words[base + 4 * i] = int(w, 16)
    try:
        return [words[addr + 4 * i] for i in range(count)]
    except KeyError:
        raise ToolFailure(f"QEMU's monitor did not return guest memory at {addr:#x}") from None


def stack_high_water(sock_path: str, footprint: dict) -> int | None:
    """Bytes of stack the firmware used since reset (deepest point), or None when the firmware
    does not paint its stack. A value equal to the window means the window overflowed."""
    syms = footprint["symbols"]
    lo, top = syms.get("_tg_stack_paint_start"), syms.get("_estack")
    if lo is None or top is None or not lo < top:
        return None
    words = read_words(sock_path, lo, (top - lo) // 4)
    for i, w in enumerate(words):
        if w != STACK_PAINT:
            return top - lo - 4 * i
    return 0
