"""SCons build script of the tinygen-mps2 dev platform (run by `pio run`).

Compiles the project's C/C++/assembly sources with the system
arm-none-eabi-gcc, links them with the board's linker script (mps2.ld) and
newlib-nano, and produces firmware.elf, firmware.bin and a size report.
"""

import hashlib
import os
import re
import shutil
import subprocess
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
    ]
    + tinygen_argv.linker_map_flags(env),
    LIBS=["m"],
)

# ---------------------------------------------------------------------------
# TFLM from a source tree: `custom_tinygen_tflm_dir = /abs/path` names a
# TensorFlow Lite for Microcontrollers tree in Arduino-library layout
# (src/tensorflow/lite/micro/..., src/third_party/...) or in the layout of
# tflite-micro's create_tflm_tree.py (tensorflow/lite/micro/..., third_party/...
# at the tree's top; with OPTIMIZED_KERNEL_DIR=cmsis_nn its kernels/cmsis_nn/
# files replace the same-named reference kernels). Either way the directory that
# holds tensorflow/ is the tree's source root. The tree is compiled
# here into a static library ($BUILD_DIR/libtflm.a); PlatformIO's library
# finder is not involved. The tree's Arduino-only files are left out, and the
# project supplies the platform functions they would have defined (tinygen copies
# firmware/tflm/tg_tflm_platform.cc into src/).
#
# `custom_tinygen_tflm_ops = FULLY_CONNECTED SOFTMAX ...` (TFLite builtin op
# names; tinygen writes the model's) limits the op kernels compiled to those
# ops' and the helpers they include; without it every kernel is compiled.
# Objects are shared between projects through an SCons cache (see
# _tflm_cache_dir): a TFLM source file compiled once with the same flags is
# not compiled again for the next project.

# Directories of the tree (relative to its source root) that are compiled.
TFLM_SOURCE_DIRS = ("tensorflow", "third_party")
TFLM_KERNELS = "tensorflow/lite/micro/kernels"
_SOURCE_EXTS = (".c", ".cc", ".cpp")

# Left out, relative to the source root:
#   Arduino glue and examples; the microfrontend + kissfft audio feature code
#   of the micro_speech example (not part of the interpreter);
#   test-only helpers;
#   the platform files (debug_log, system_setup, micro_time), which need the
#   Arduino core in an Arduino tree (Arduino.h, peripherals/).
#   the platform files of create_tflm_tree.py's TARGET=cortex_m_generic
#   (cortex_m_generic/: micro_time.cc needs the CMSIS device header's DWT, and
#   all of them define what the project's platform file defines), left out by
#   the Arduino export as well.
TFLM_EXCLUDE = (
    "tensorflow/lite/micro/arduino/",
    "tensorflow/lite/micro/examples/",
    "tensorflow/lite/micro/testing/",
    "tensorflow/lite/micro/tools/",
    "tensorflow/lite/experimental/microfrontend/",
    "third_party/kissfft/",
    "**/*_test.c",
    "**/*_test.cc",
    "**/*_test.cpp",
    "tensorflow/lite/micro/test_helpers.*",
    "tensorflow/lite/micro/test_helper_custom_ops.*",
    "tensorflow/lite/micro/fake_micro_context.*",
    "tensorflow/lite/micro/mock_micro_graph.*",
    "tensorflow/lite/micro/kernels/kernel_runner.*",
    "tensorflow/lite/micro/debug_log.*",
    "tensorflow/lite/micro/system_setup.*",
    "tensorflow/lite/micro/micro_time.*",
    "tensorflow/lite/micro/cortex_m_generic/",
)

# Any other source file that includes one of these is left out as well.
_TFLM_FOREIGN_INCLUDE = re.compile(
    r'^[ \t]*#[ \t]*include[ \t]*[<"](Arduino\.h|mbed\.h|peripherals/)', re.M
)
# A kernel's registration function, defined (not declared or called).
_TFLM_REGISTER_DEF = re.compile(r"\bRegister_(\w+)\s*\(\s*\)\s*\{")
_TFLM_KERNEL_INCLUDE = re.compile(
    r'^[ \t]*#[ \t]*include[ \t]*"tensorflow/lite/micro/kernels/([\w/]+)\.h"', re.M
)

# Include directories (relative to the source root; "" is the root itself)
# added when present. The Arduino layout writes includes from src/
# ("third_party/flatbuffers/include/..."); the others serve trees that include
# "flatbuffers/...", "fixedpoint/...", "Include/arm_nnfunctions.h", etc.
TFLM_INCLUDE_DIRS = (
    "",
    "third_party/flatbuffers/include",
    "third_party/gemmlowp",
    "third_party/ruy",
    "third_party/cmsis",
    "third_party/cmsis/CMSIS/Core/Include",
    "third_party/cmsis_nn",
    "third_party/cmsis_nn/Include",
)

# Where a tree keeps tensorflow/: src/ (Arduino library) or its top (create_tflm_tree.py).
TFLM_LAYOUTS = ("src", "")


def _read_text(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _tflm_tree_dir():
    """The TFLM tree's source root (the directory holding tensorflow/), or None."""
    value = (env.GetProjectOption("custom_tinygen_tflm_dir", "") or "").strip()
    if not value:
        return None
    path = os.path.expanduser(value)
    if not os.path.isabs(path):
        path = os.path.join(env.subst("$PROJECT_DIR"), path)
    path = os.path.realpath(path)
    for sub in TFLM_LAYOUTS:
        root = os.path.join(path, sub) if sub else path
        if os.path.isdir(os.path.join(root, "tensorflow", "lite", "micro")):
            return root
    _fail(
        "custom_tinygen_tflm_dir = %s is not a TFLM tree (no src/tensorflow/lite/micro "
        "as in an Arduino library, nor tensorflow/lite/micro as create_tflm_tree.py "
        "writes it)" % value
    )
    return None


def _tflm_sources(src_dir):
    """{relative path: text} of every C/C++ source under TFLM_SOURCE_DIRS."""
    found = {}
    for top in TFLM_SOURCE_DIRS:
        for root, dirs, files in os.walk(os.path.join(src_dir, top)):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(_SOURCE_EXTS):
                    path = os.path.join(root, name)
                    rel = os.path.relpath(path, src_dir).replace(os.sep, "/")
                    found[rel] = _read_text(path)
    return found


def _tflm_op_registrations(src_dir, op):
    """Register_* functions that MicroMutableOpResolver uses for builtin `op`."""
    header = _read_text(
        os.path.join(src_dir, "tensorflow", "lite", "micro", "micro_mutable_op_resolver.h")
    )
    names = set()
    for chunk in re.split(r"\bTfLiteStatus\s+(?=Add\w+\s*\()", header):
        if re.search(r"\bBuiltinOperator_%s\b" % re.escape(op), chunk):
            names.update(re.findall(r"\bRegister_(\w+)\s*\(", chunk))
    return names or {op}


def _tflm_kernel_selection(src_dir, sources, ops):
    """Kernel sources (relative to src/) to leave out when only `ops` are needed:
    every kernel file that defines Register_* functions, except the ones for
    `ops`; helpers without registrations (kernel_util, *_common, lstm_eval, ...)
    are kept when a kept kernel includes their header. None: keep them all."""
    prefix = TFLM_KERNELS + "/"
    kernels = {p: t for p, t in sources.items() if p.startswith(prefix)}
    defines = {p: set(_TFLM_REGISTER_DEF.findall(t)) for p, t in kernels.items()}
    keep = set()
    for op in ops:
        wanted = _tflm_op_registrations(src_dir, op)
        files = [p for p, regs in defines.items() if regs & wanted]
        if not files:
            print("TFLM: no kernel source registers %s; compiling every kernel" % op)
            return None
        keep.update(files)
    helpers = {p for p, regs in defines.items() if not regs}

    def helper_for(base):
        for stem in (base, base + "_common"):
            for ext in _SOURCE_EXTS:
                path = prefix + stem + ext
                if path in helpers:
                    return path
        return None

    keep.update(p for p in (helper_for("kernel_util"),) if p)
    seen_headers = set()
    todo = sorted(keep)
    while todo:
        text = kernels.get(todo[0])
        if text is None:  # a header
            text = _read_text(os.path.join(src_dir, todo[0]))
        todo = todo[1:]
        for base in _TFLM_KERNEL_INCLUDE.findall(text):
            if base in seen_headers:
                continue
            seen_headers.add(base)
            todo.append(prefix + base + ".h")
            helper = helper_for(base)
            if helper and helper not in keep:
                keep.add(helper)
                todo.append(helper)
    return sorted(p for p in kernels if p not in keep)


def _tflm_defines(src_dir):
    """Macros the tree's headers need; they change declarations and struct
    layouts, so the whole program (glue included) is built with them."""
    micro = os.path.join(src_dir, "tensorflow", "lite", "micro")
    defines = [
        # TfLiteTensor without the desktop-only fields, as every TFLM build
        # (and the tflite_micro Python interpreter) has it
        "TF_LITE_STATIC_MEMORY",
        # An Arduino-layout tree selects its optimized kernel variants with
        # `#if defined(ARDUINO)` (upstream's `defined(CMSIS_NN)`, rewritten by
        # the Arduino export), e.g. Register_FULLY_CONNECTED_INT8() is declared
        # in fully_connected.h and defined in kernels/cmsis_nn/. The Arduino
        # IDE always defines it; nothing in tinygen's firmware looks at it and
        # Arduino.h is on no include path.
        "ARDUINO",
    ]
    if os.path.isdir(os.path.join(micro, "kernels", "cmsis_nn")):
        defines.append("CMSIS_NN")  # the same switch in upstream-layout trees
    if "va_list" in _read_text(os.path.join(micro, "debug_log.h")):
        defines.append("TG_TFLM_DEBUG_LOG_VA_LIST")  # see tg_tflm_platform.cc
    return defines


def _tflm_cache_dir():
    """Where compiled TFLM objects are shared between projects: PlatformIO's
    own build_cache_dir if the project sets one (it then caches everything),
    else <cache_dir>/tinygen-tflm/<compiler id> (PlatformIO's cache_dir,
    <core_dir>/.cache by default; `pio system prune --cache` empties it).
    `custom_tinygen_tflm_cache = no` turns it off. SCons files an object under
    a hash of its sources, headers, command line and path, so a hit is the
    same object."""
    if env.subst("$BUILD_CACHE_DIR"):
        return None
    setting = str(env.GetProjectOption("custom_tinygen_tflm_cache", "yes")).strip().lower()
    if setting in ("no", "off", "false", "0"):
        return None
    try:
        version = subprocess.run(
            [env.subst("$CXX"), "--version"], capture_output=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    compiler = hashlib.sha256(_gcc.encode() + b"\0" + version).hexdigest()[:16]
    try:
        pio_cache = env.GetProjectConfig().get("platformio", "cache_dir")
    except Exception:  # pylint: disable=broad-except
        pio_cache = os.path.join(env.subst("$PROJECT_CORE_DIR"), ".cache")
    parent = os.path.join(pio_cache, "tinygen-tflm")
    try:
        os.makedirs(parent, exist_ok=True)  # SCons creates only the last level
    except OSError:
        return None
    return os.path.join(parent, compiler)


def _tflm_release_mode():
    """`custom_tinygen_tflm_release = yes`: build the tree as TFLM's release build does
    (TF_LITE_STRIP_ERROR_STRINGS, NDEBUG, kernels -O2, core -Os); `= defines`: the release
    defines only, every file at the project's flags. benchmarks/bench_fair.py uses both."""
    value = str(env.GetProjectOption("custom_tinygen_tflm_release", "no")).strip().lower()
    if value == "defines":
        return "defines"
    return "yes" if value in ("yes", "on", "true", "1") else None


def _tflm_release():
    return _tflm_release_mode() == "yes"


def _build_tflm(src_dir):
    """Compile the tree whose source root (the directory holding tensorflow/) is src_dir."""
    includes = [
        os.path.join(src_dir, d) if d else src_dir
        for d in TFLM_INCLUDE_DIRS
        if os.path.isdir(os.path.join(src_dir, d) if d else src_dir)
    ]
    # CPPPATH lets SCons track the headers; -isystem (which wins over -I for the
    # same directory) keeps the tree's own warnings out of the project's build.
    env.Append(
        CPPPATH=includes,
        CCFLAGS=[tinygen_argv.word("-isystem" + d) for d in includes],
        CPPDEFINES=_tflm_defines(src_dir) + (["TF_LITE_STRIP_ERROR_STRINGS", "NDEBUG"] if _tflm_release_mode() else []),
    )

    sources = _tflm_sources(src_dir)
    excluded = list(TFLM_EXCLUDE)
    excluded += [p for p, text in sources.items() if _TFLM_FOREIGN_INCLUDE.search(text)]
    ops = re.split(r"[\s,]+", str(env.GetProjectOption("custom_tinygen_tflm_ops", "")).strip())
    ops = sorted({op.upper() for op in ops if op})
    if ops:
        unused = _tflm_kernel_selection(src_dir, sources, ops)
        if unused is not None:
            # AllOpsResolver references every kernel; the project has its own resolver
            excluded += unused + ["tensorflow/lite/micro/all_ops_resolver.*"]
    src_filter = " ".join(
        ["+<%s/>" % d for d in TFLM_SOURCE_DIRS] + ["-<%s>" % p for p in excluded]
    )

    # The tree gets the program's flags (board extra_flags and build_flags
    # are applied to `env` only later, by BuildProgram), minus warnings: the
    # tree is third-party code.
    lib_env = env.Clone()
    lib_env.ProcessFlags(board.get("build.extra_flags", ""))
    lib_env.ProcessFlags(lib_env.get("BUILD_FLAGS"))
    lib_env.ProcessUnFlags(lib_env.get("BUILD_UNFLAGS"))
    lib_env.Replace(
        CCFLAGS=[
            f
            for f in lib_env["CCFLAGS"]
            if not (str(f).startswith("-W") and not str(f).startswith(("-Wa,", "-Wp,")))
        ]
        + ["-w"]
    )
    cache = _tflm_cache_dir()
    if cache:
        lib_env.CacheDir(cache)
    if _tflm_release():
        # TFLM's own release build: kernels and CMSIS-NN at -O2, the interpreter core at -Os (the
        # optimization flag goes last, so it wins over the project's build_flags).
        kernels = ["+<%s/>" % TFLM_KERNELS, "+<third_party/cmsis_nn/>"]
        kernel_filter = " ".join(kernels + ["-<%s>" % p for p in excluded])
        core_filter = src_filter + " " + " ".join("-" + k[1:] for k in kernels)
        kernel_env, core_env = lib_env.Clone(), lib_env.Clone()
        kernel_env.Append(CCFLAGS=["-O2"])
        core_env.Append(CCFLAGS=["-Os"])
        klib = kernel_env.BuildLibrary(os.path.join("$BUILD_DIR", "tflm_kernels"), src_dir, kernel_filter)
        clib = core_env.BuildLibrary(os.path.join("$BUILD_DIR", "tflm"), src_dir, core_filter)
        env.Prepend(LIBS=[klib, clib, klib])  # the two reference each other; no link groups here
        ops = ops + ["(release: kernels -O2, core -Os)"]
    else:
        lib = lib_env.BuildLibrary(os.path.join("$BUILD_DIR", "tflm"), src_dir, src_filter)
        env.Prepend(LIBS=[lib])
    print(
        "TFLM: %s (%s)%s"
        % (src_dir, "ops " + " ".join(ops) if ops else "all kernels",
           "; object cache " + cache if cache else "")
    )


_tflm_tree = _tflm_tree_dir()
if _tflm_tree and "nobuild" not in COMMAND_LINE_TARGETS:
    _build_tflm(_tflm_tree)

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
tinygen_argv.use_linker_script(env, _ldscript)
# The board scripts INCLUDE the shared tg_mps2_sections.ld that sits next to them.
env.Append(LIBPATH=[os.path.dirname(_ldscript)])

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
