"""tinygen-riscv: a PlatformIO dev platform for QEMU's RISC-V virt machine (RV32).

Like tinygen-mps2 it needs no registry package: the toolchain is the system
riscv64-unknown-elf-gcc with picolibc (Debian: gcc-riscv64-unknown-elf +
picolibc-riscv64-unknown-elf) found on PATH, and the firmware runs in
qemu-system-riscv32 (see tinygen/device/emulator.py). The build is builder/main.py.
"""

from platformio.public import PlatformBase


class TinygenriscvPlatform(PlatformBase):  # PlatformIO derives the class name from "tinygen-riscv"
    def is_embedded(self):
        # No "uploader" package declares this embedded, but it is bare metal.
        return True
