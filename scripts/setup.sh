#!/usr/bin/env bash
# Install everything tinygen and its tests need on a fresh Debian/Ubuntu machine.
#
#   bash scripts/setup.sh
#
# 1. Debian packages: the Arm GCC toolchain (+newlib, libstdc++), QEMU for the emulated
#    boards, and python3-venv (Debian and Ubuntu >= 23.04 refuse `pip install` into the
#    system Python, PEP 668 "externally-managed-environment", so tinygen gets its own venv).
# 2. A virtual environment in .venv/ inside this checkout, with tinygen (editable) and its
#    Python dependencies (TensorFlow CPU, tflite-micro, PlatformIO, SCons, ...).
# 3. A link to .venv/bin/tinygen in /usr/local/bin (as root) or ~/.local/bin, so `tinygen`
#    works from any new shell; .venv/bin/tinygen always works too.
#
# Which Python: $TINYGEN_PYTHON if set, else `python3` on PATH if it is a supported version
# (3.11-3.13), else /usr/bin/python3. A pyenv/conda Python first on PATH is fine.
# Running it twice changes nothing: packages already installed are not reinstalled, and pip
# runs only when pyproject.toml changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="${TINYGEN_VENV:-$ROOT/.venv}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# --- Debian packages -------------------------------------------------------------------
DEB_PACKAGES=(gcc g++ make git python3 python3-venv python3-dev
              gcc-arm-none-eabi binutils-arm-none-eabi libnewlib-arm-none-eabi
              libstdc++-arm-none-eabi-newlib qemu-system-arm
              clang libclang-rt-dev    # libFuzzer + sanitizer runtimes for tests/fuzz
              gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc)   # qemu-rv32
DEB_PACKAGES+=(ser2net)   # serves a board's UART as RFC 2217 for a labgrid farm (tests: loopback)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the Python that builds the venv ---------------------------------------------------
supported() {  # supported PYTHON -> 0 if its version is one tinygen's suite passed on
  "$1" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null
}
PY="${TINYGEN_PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3 >/dev/null && supported python3; then PY="python3"; else PY="/usr/bin/python3"; fi
fi
if ! supported "$PY"; then
  echo "setup: $PY is not Python 3.11-3.13; set TINYGEN_PYTHON to one that is" >&2
  exit 2
fi

# --- the venv --------------------------------------------------------------------------
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "setup: creating $VENV with $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.tinygen-setup"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $ROOT"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ] || ! "$VENV/bin/python" -c 'import tinygen' 2>/dev/null; then
  echo "setup: installing tinygen and its Python dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev,farm]"
  # onnx2tf imports tf_keras, whose wheel names `tensorflow` (not tensorflow-cpu) as its dependency:
  # installed without it, it runs on the tensorflow-cpu above (pyproject.toml says why).
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "tf-keras==2.21.0"
  echo "$want" > "$STAMP"
fi

# --- tinygen (and pio, if there is none) on PATH --------------------------------------
# TINYGEN_LINK=0 skips this (e.g. a second venv for another Python version).
if [ "${TINYGEN_LINK:-1}" = 0 ]; then
  echo "tinygen installed: $VENV/bin/tinygen (not linked: TINYGEN_LINK=0)"
  exit 0
fi
if [ -w /usr/local/bin ]; then BIN="/usr/local/bin"; else BIN="$HOME/.local/bin"; mkdir -p "$BIN"; fi
if [ "$(readlink "$BIN/tinygen" 2>/dev/null)" != "$VENV/bin/tinygen" ]; then
  ln -sfn "$VENV/bin/tinygen" "$BIN/tinygen"
fi
# Generated projects' READMEs say `pio run`: give a newcomer the PlatformIO tinygen installed,
# but never shadow a PlatformIO the user already has (a link of ours is refreshed).
for tool in pio platformio; do
  ours="$(readlink "$BIN/$tool" 2>/dev/null || true)"
  if { [ -z "$ours" ] && [ ! -e "$BIN/$tool" ] && ! command -v "$tool" >/dev/null 2>&1; } \
     || [ "${ours%/.venv/bin/$tool}" != "$ours" ]; then   # none at all, or a link to a tinygen venv
    ln -sfn "$VENV/bin/$tool" "$BIN/$tool"
  fi
done
echo "tinygen $("$VENV/bin/tinygen" --version 2>/dev/null | awk '{print $NF}') installed: $BIN/tinygen -> $VENV/bin/tinygen"
case ":$PATH:" in *":$BIN:"*) ;; *) echo "note: $BIN is not on PATH here; use $VENV/bin/tinygen or add $BIN to PATH";; esac
