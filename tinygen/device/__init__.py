"""Where the device is talked to: PlatformIO builds and uploads (:mod:`.pio`), the
QEMU board with its UART on a pty (:mod:`.emulator`), the real-board first-build
check (:mod:`.realboard`), the wire codec (:mod:`.framing`) and the serial link that
sends requests and reads replies (:mod:`.serial_link`).

May import: :mod:`tinygen.common`, :mod:`tinygen.tflite`, :mod:`tinygen.intake`,
:mod:`tinygen.analysis`, :mod:`tinygen.codegen`.
"""
