"""Where the device is talked to: PlatformIO builds and uploads (:mod:`.pio_build`;
tinygen's offline PlatformIO home and how pio is started: :mod:`.pio_offline`), the
QEMU board with its UART on a pty (:mod:`.emulator`), the real-board first-build
check (:mod:`.realboard`), the wire codec (:mod:`.framing`), the serial link that
sends requests and reads replies (:mod:`.serial_link`), finding the port a board is
on (:mod:`.ports`) and which tools and boards work here (:mod:`.toolcheck`).

May import: :mod:`tinygen.common`, :mod:`tinygen.tflite`, :mod:`tinygen.intake`,
:mod:`tinygen.analysis`, :mod:`tinygen.codegen`.
"""
