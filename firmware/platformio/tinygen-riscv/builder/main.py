"""SCons build script of the tinygen-riscv dev platform (run by `pio run`).

Compiles the project's C/C++/assembly sources with the system
riscv64-unknown-elf-gcc for the board's -march/-mabi, links them with the
board's linker script (riscv_virt.ld) and picolibc, and produces
firmware.elf, firmware.bin and a size report. Only the compiled runtime is
built here: no TFLM tree support (that lives in tinygen-mps2's builder).
"""

import os
import re
import shutil
import sys

from SCons.Script import (  # pylint: disable=import-error
    COMMAND_LINE_TARGETS,
    AlwaysBuild,
    Builder,
    Default,
    DefaultEnvironment,
)

env = DefaultEnvironment()
platform = env.PioPlatform()
board = env.BoardConfig()

# Every command runs without a shell, its words as the program's argv, so a path is data whatever
# characters it holds (firmware/platformio/tinygen_argv.py, shared by tinygen's two platforms).
sys.path.insert(0, os.path.dirname(os.path.realpath(platform.get_dir())))
import tinygen_argv  # noqa: E402  pylint: disable=import-error,wrong-import-position

tinygen_argv.use_argv(env)

PREFIX = board.get("build.toolchain_prefix", "riscv64-unknown-elf-")


def _fail(message):
    sys.stderr.write("Error: %s\n" % message)
    env.Exit(1)


_gcc = shutil.which(PREFIX + "gcc", path=env["ENV"].get("PATH", os.environ.get("PATH")))
if not _gcc:
    _fail(
        "%sgcc not found on PATH; install the RISC-V toolchain "
        "(Debian: apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf)" % PREFIX
    )

env.Replace(
    AR=PREFIX + "gcc-ar",
    AS=PREFIX + "as",
    CC=PREFIX + "gcc",
    CXX=PREFIX + "g++",
    GDB=PREFIX + "gdb",
    OBJCOPY=PREFIX + "objcopy",
    RANLIB=PREFIX + "gcc-ranlib",
    SIZETOOL=PREFIX + "size",
    ARFLAGS=["rc"],
    PROGSUFFIX=".elf",
    # Flash = everything loaded below 0x80400000; RAM = .data + .bss.
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPROGREGEXP=r"^(?:\.text|\.rodata|\.init_array|\.data)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.bss)\s+(\d+).*",
    SIZEPRINTCMD="$SIZETOOL -B -d $SOURCES",
)

if not env.get("PROGNAME") or env.get("PROGNAME") == "program":
    env.Replace(PROGNAME="firmware")

march = board.get("build.march", "rv32imc_zicsr")
mabi = board.get("build.mabi", "ilp32")
# GCC 12 picks its multilib (libgcc, picolibc) by -march, and its table knows
# rv32imc but not rv32imc_zicsr, for which it falls back to the rv64 default.
# Zicsr only adds the CSR instructions the HAL uses (GCC 12 follows the 2019
# ISA spec, where they left the base ISA), never code in a library, so the
# link step names the ISA without the Z extensions.
link_march = re.sub(r"_z[a-z0-9]+", "", march)
specs = ["--specs=picolibc.specs"]

env.Append(
    ASFLAGS=["-march=%s" % march, "-mabi=%s" % mabi],
    ASPPFLAGS=["-x", "assembler-with-cpp"],
    CCFLAGS=specs
    + [
        "-march=%s" % march,
        "-mabi=%s" % mabi,
        "-mcmodel=medany",
        "-Os",
        "-Wall",
        "-Wextra",
        "-ffunction-sections",
        "-fdata-sections",
        "-fno-common",
    ],
    CFLAGS=["-std=gnu11"],
    CXXFLAGS=[
        "-std=gnu++17",
        "-fno-rtti",
        "-fno-exceptions",
        "-fno-threadsafe-statics",
        "-fno-use-cxa-atexit",
    ],
    CPPDEFINES=[("F_CPU", "$BOARD_F_CPU")],
    LINKFLAGS=specs
    + [
        "-march=%s" % link_march,
        "-mabi=%s" % mabi,
        "-mcmodel=medany",
        "-Os",
        "-nostartfiles",  # the HAL's startup code, not picolibc's crt0
        "-Wl,--gc-sections",
    ]
    + tinygen_argv.linker_map_flags(env),
)

# ---------------------------------------------------------------------------
# Linker script: board_build.ldscript / build.ldscript, looked up in the
# project first (generated projects carry firmware/hal/riscv-virt in src/),
# then in the tinygen tree next to this platform.


def _resolve_ldscript(name):
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    platform_dir = platform.get_dir()
    candidates = [
        os.path.join(env.subst("$PROJECT_DIR"), name),
        os.path.join(env.subst("$PROJECT_SRC_DIR"), name),
        os.path.join(platform_dir, os.pardir, os.pardir, "hal", "riscv-virt", name),
    ]
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


_ldscript_name = env.subst(env.get("LDSCRIPT_PATH") or board.get("build.ldscript", ""))
if not _ldscript_name:
    _fail("no linker script: set build.ldscript in the board or board_build.ldscript")
_ldscript = _resolve_ldscript(_ldscript_name)
if not _ldscript:
    _fail("linker script '%s' not found in the project or the platform" % _ldscript_name)
tinygen_argv.use_linker_script(env, _ldscript)

# ---------------------------------------------------------------------------
# Targets

env.Append(
    BUILDERS=dict(
        ElfToBin=Builder(
            action=env.VerboseAction("$OBJCOPY -O binary $SOURCES $TARGET", "Building $TARGET"),
            suffix=".bin",
        )
    )
)

if "nobuild" in COMMAND_LINE_TARGETS:
    target_elf = os.path.join("$BUILD_DIR", "${PROGNAME}.elf")
    target_bin = os.path.join("$BUILD_DIR", "${PROGNAME}.bin")
else:
    target_elf = env.BuildProgram()
    env.Depends(target_elf, _ldscript)  # relink when the linker script changes
    target_bin = env.ElfToBin(os.path.join("$BUILD_DIR", "${PROGNAME}"), target_elf)

AlwaysBuild(env.Alias("nobuild", target_bin))
target_buildprog = env.Alias("buildprog", target_bin, target_bin)

target_size = env.Alias(
    "size", target_elf, env.VerboseAction("$SIZEPRINTCMD", "Calculating size $SOURCE")
)
AlwaysBuild(target_size)

# `pio run -t qemu`: boot the firmware with the UART on this terminal (Ctrl-A X quits).
_qemu = board.get("tinygen.qemu", "qemu-system-riscv32")
_machine = board.get("tinygen.machine", board.get("build.mcu"))
_qemu_args = " ".join(board.get("tinygen.qemu_args", []))
env.AddCustomTarget(
    name="qemu",
    dependencies=target_elf,
    actions=["%s -M %s -nographic %s -kernel $SOURCE" % (_qemu, _machine, _qemu_args)],
    title="QEMU",
    description="Run the firmware in %s (%s)" % (_qemu, _machine),
)

Default([target_buildprog, target_size])
