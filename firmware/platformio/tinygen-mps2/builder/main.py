"""SCons build script of the tinygen-mps2 dev platform (run by `pio run`).

Compiles the project's C/C++/assembly sources with the system
arm-none-eabi-gcc, links them with the board's linker script (mps2.ld) and
newlib-nano, and produces firmware.elf, firmware.bin and a size report.
"""

import os
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

PREFIX = board.get("build.toolchain_prefix", "arm-none-eabi-")


def _fail(message):
    sys.stderr.write("Error: %s\n" % message)
    env.Exit(1)


# ---------------------------------------------------------------------------
# Toolchain: the system one, from PATH (no registry package).

_gcc = shutil.which(PREFIX + "gcc", path=env["ENV"].get("PATH", os.environ.get("PATH")))
if not _gcc:
    _fail(
        "%sgcc not found on PATH; install the Arm GNU toolchain "
        "(Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
        "libstdc++-arm-none-eabi-newlib)" % PREFIX
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
    # Flash = everything loaded into the code RAM; RAM = .data + .bss.
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPROGREGEXP=(
        r"^(?:\.isr_vector|\.text|\.rodata|\.ARM\.extab|\.ARM\.exidx|"
        r"\.preinit_array|\.init_array|\.fini_array|\.data)\s+(\d+).*"
    ),
    SIZEDATAREGEXP=r"^(?:\.data|\.bss)\s+(\d+).*",
    SIZEPRINTCMD="$SIZETOOL -B -d $SOURCES",
)

if not env.get("PROGNAME") or env.get("PROGNAME") == "program":
    env.Replace(PROGNAME="firmware")

# ---------------------------------------------------------------------------
# Flags from the board manifest.

cpu = board.get("build.cpu")
machine_flags = ["-mthumb", "-mcpu=%s" % cpu]
float_abi = board.get("build.float_abi", "soft")
if float_abi != "soft":
    machine_flags.append("-mfloat-abi=%s" % float_abi)
    machine_flags.append("-mfpu=%s" % board.get("build.fpu"))

env.Append(
    ASFLAGS=machine_flags,
    ASPPFLAGS=["-x", "assembler-with-cpp"],
    CCFLAGS=machine_flags
    + [
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
    LINKFLAGS=machine_flags
    + [
        "-Os",
        "-Wl,--gc-sections",
        "--specs=nano.specs",
        "--specs=nosys.specs",
        "-Wl,-Map,%s" % os.path.join("$BUILD_DIR", "${PROGNAME}.map"),
    ],
    LIBS=["m"],
)

# ---------------------------------------------------------------------------
# Linker script: board_build.ldscript / build.ldscript, looked up in the
# project first (generated projects carry firmware/hal/mps2/mps2.ld in src/),
# then next to this platform.


def _resolve_ldscript(name):
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    platform_dir = platform.get_dir()
    candidates = [
        os.path.join(env.subst("$PROJECT_DIR"), name),
        os.path.join(env.subst("$PROJECT_SRC_DIR"), name),
        os.path.join(platform_dir, "ldscripts", name),
        # in the tinygen tree: firmware/platformio/tinygen-mps2 -> firmware/hal/mps2
        os.path.join(platform_dir, os.pardir, os.pardir, "hal", "mps2", name),
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
env.Replace(LDSCRIPT_PATH=_ldscript)

# ---------------------------------------------------------------------------
# Targets

env.Append(
    BUILDERS=dict(
        ElfToBin=Builder(
            action=env.VerboseAction(
                "$OBJCOPY -O binary $SOURCES $TARGET", "Building $TARGET"
            ),
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

# `pio run -t qemu`: boot the firmware with UART0 on this terminal (Ctrl-A X quits).
_machine = board.get("tinygen.machine", board.get("build.mcu"))
env.AddCustomTarget(
    name="qemu",
    dependencies=target_elf,
    actions=[
        "qemu-system-arm -M %s -nographic -icount shift=0 -kernel $SOURCE" % _machine
    ],
    title="QEMU",
    description="Run the firmware in qemu-system-arm (%s)" % _machine,
)

Default([target_buildprog, target_size])
