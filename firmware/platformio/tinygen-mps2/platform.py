"""tinygen-mps2: a PlatformIO dev platform for QEMU's MPS2 Cortex-M machines.

It needs no registry package: the toolchain is the system arm-none-eabi-gcc
(Debian: gcc-arm-none-eabi + libnewlib-arm-none-eabi) found on PATH, and the
firmware runs in qemu-system-arm (see tinygen/device/emulator.py). The build itself
is builder/main.py.
"""

from platformio.public import PlatformBase


class Tinygenmps2Platform(PlatformBase):  # PlatformIO derives the class name from "tinygen-mps2"
    def is_embedded(self):
        # No "uploader" package declares this embedded, but it is bare metal.
        return True
