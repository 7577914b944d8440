"""How the tests compile generated TFLM glue against an Arduino-layout TFLM tree (the same include
directories as firmware/platformio/tinygen-mps2/builder/main.py)."""

CXXFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-std=gnu++17", "-Os",
            "-Wall", "-Wextra", "-Werror", "-fno-rtti", "-fno-exceptions", "-c"]
# Include directories of an Arduino-layout tree (as firmware/platformio/tinygen-mps2/builder/main.py).
TREE_INCLUDE_DIRS = ("src", "src/third_party/flatbuffers/include", "src/third_party/gemmlowp",
                     "src/third_party/ruy", "src/third_party/cmsis", "src/third_party/cmsis/CMSIS/Core/Include",
                     "src/third_party/cmsis_nn", "src/third_party/cmsis_nn/Include")
# Each Arduino core defines ARDUINO and its architecture macro.
BOARD_DEFINES = {"esp32": ["-DARDUINO=10812", "-DARDUINO_ARCH_ESP32"],
                 "nano33ble": ["-DARDUINO=10812", "-DARDUINO_ARCH_MBED", "-DARDUINO_ARDUINO_NANO33BLE"]}
