#!/usr/bin/env bash
# Install everything tinygen and its tests need on a fresh Debian/Ubuntu machine:
# the Arm GCC toolchain (+newlib, libstdc++), QEMU for the emulated boards, and the
# Python package with its dependencies (TensorFlow CPU, tflite-micro, PlatformIO, ...).
# Run as root (or with sudo). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  gcc g++ make git gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib \
  binutils-arm-none-eabi qemu-system-arm >/dev/null
python3 -m pip install -q --upgrade pip
python3 -m pip install -q -e ".[dev]"
echo "tinygen installed: $(command -v tinygen)"
