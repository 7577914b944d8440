"""Board-truth kit: compile and link generated Arduino projects against real trees, outside PlatformIO.

The Nano 33 BLE flags are composed the way PlatformIO's builder for framework-arduino-mbed does
(platformio/builder-framework-arduino-core-mbed, arduino-core-mbed.py, the revision that
platform-nordicnrf52 10.11.0 pins): the variant's cflags.txt/cxxflags.txt split into common and
language-only flags, defines.txt as -D, includes.txt through -iprefix <core>, the core, api/deprecated*
and variant include dirs, ARDUINO=10810 and ARDUINO_ARCH_MBED, the board manifest's extra flags, and the
builder's soft-float override for Cortex-M4. Only mbed-os itself (variants/*/libs/libmbed.a, absent from
the core's source repository) cannot be linked: its symbols stay unresolved and their size is not counted.

Used by tests/codegen/test_board_truth.py; nothing here fetches anything.
"""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

VARIANT = "ARDUINO_NANO33BLE"
# boards/nano33ble.json in platform-nordicnrf52 10.11.0: build.extra_flags and build.f_cpu
BOARD_EXTRA = ["-DARDUINO_ARDUINO_NANO33BLE", "-DARDUINO_ARCH_NRF52840", "-DF_CPU=64000000L", "-DPLATFORMIO=60118"]
SOURCE_SUFFIXES = (".c", ".cc", ".cpp")
# Core libraries PlatformIO's dependency finder adds (chain+ mode follows the TFLM library's own
# includes: Chirale's peripherals/peripherals.h includes <Wire.h>, found in the core's libraries/).
FRAMEWORK_LIBRARIES = ("Wire",)
OUR_WARNINGS = ["-Wall", "-Wextra", "-Werror"]


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def compose_framework(mbed_dir: Path, api_dir: Path | None, work: Path) -> Path:
    """A framework dir laid out like PlatformIO's framework-arduino-mbed package: the core repository
    with ArduinoCore-API's api/ at cores/arduino/api (the release package puts it there; the source
    repository does not have it). Built from symlinks; the trees stay read-only."""
    core = mbed_dir / "cores" / "arduino"
    if (core / "api").is_dir() or api_dir is None:
        return mbed_dir
    fw = work / "framework-arduino-mbed"
    if fw.exists():
        return fw
    (fw / "cores" / "arduino").mkdir(parents=True)
    for entry in core.iterdir():
        (fw / "cores" / "arduino" / entry.name).symlink_to(entry)
    (fw / "cores" / "arduino" / "api").symlink_to(api_dir / "api")
    (fw / "variants").mkdir()
    (fw / "variants" / VARIANT).symlink_to(mbed_dir / "variants" / VARIANT)
    return fw


@dataclass
class MbedFlags:
    framework: Path
    common: list[str]
    c_only: list[str]
    cxx_only: list[str]
    defines: list[str]
    includes: list[str]
    ldflags: list[str]

    def command(self, src: Path, obj: Path, extra_includes: list[Path], ours: bool) -> list[str]:
        is_c = src.suffix == ".c"
        cc = "arm-none-eabi-gcc" if is_c else "arm-none-eabi-g++"
        lang = self.c_only if is_c else self.cxx_only
        warn = OUR_WARNINGS if ours else []
        incs = [f"-I{p}" for p in extra_includes]
        return [cc, "-o", str(obj), *lang, *self.common, *warn, *self.defines, *incs, *self.includes, str(src)]


def mbed_flags(framework: Path, build_flags: list[str] | tuple[str, ...] = ()) -> MbedFlags:
    """``build_flags``: the project's -D flags (platformio.ini build_flags), which PlatformIO passes to
    the core, the libraries and the project's own files alike."""
    var = framework / "variants" / VARIANT
    cflags, cxxflags = _lines(var / "cflags.txt"), _lines(var / "cxxflags.txt")
    common = sorted(set(cflags) & set(cxxflags))
    c_only = sorted(set(cflags) - set(common))
    cxx_only = sorted(set(cxxflags) - set(common))
    core = framework / "cores" / "arduino"
    # SCons writes the builder's CCFLAGS after the variant's, so -mfloat-abi=soft wins over softfp.
    common += [f"-iprefix{core}", f"@{var / 'includes.txt'}", "-nostdlib", "-mfloat-abi=soft", "-mfpu=fpv4-sp-d16"]
    # defines.txt is written for a shell (\"cmsis_nvic.h\"); these go to the compiler without one
    defines = [d.replace('\\"', '"') for d in _lines(var / "defines.txt")]
    defines += ["-DARDUINO=10810", "-DARDUINO_ARCH_MBED", *BOARD_EXTRA, *build_flags]
    includes = [f"-I{core}", f"-I{core / 'api' / 'deprecated'}", f"-I{core / 'api' / 'deprecated-avr-comp'}",
                f"-I{var}"]
    ldflags = [f for f in _lines(var / "ldflags.txt") if not f.startswith("-Wl,--wrap")]
    ldflags += ["-mfloat-abi=soft", "--specs=nano.specs", "--specs=nosys.specs"]
    return MbedFlags(framework, common, c_only, cxx_only, defines, includes, ldflags)


def cache_key(flags: MbedFlags, *trees: Path | None) -> str:
    """Same trees and flags, same objects: the composed framework's own path is left out."""
    import hashlib
    import json

    stable = [f for f in flags.common if not f.startswith(("-iprefix", "@"))]
    blob = json.dumps([[str(t) for t in trees], stable, flags.c_only, flags.cxx_only, flags.defines])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class CompileResult:
    objects: list[Path] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def compile_all(flags: MbedFlags, sources: list[Path], out_dir: Path, extra_includes: list[Path], *,
                ours: bool, root: Path, jobs: int = 2) -> CompileResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    res = CompileResult()

    def one(src: Path):
        rel = src.relative_to(root).as_posix()
        obj = out_dir / (re.sub(r"[^A-Za-z0-9_.]", "_", rel) + ".o")
        if obj.exists() and not ours:
            return obj, None
        p = subprocess.run(flags.command(src, obj, extra_includes, ours), capture_output=True, text=True)
        if p.returncode != 0 or (ours and p.stderr.strip()):
            return None, f"{rel}:\n{p.stderr.strip()[-3000:]}"
        return obj, None

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for obj, failure in pool.map(one, sources):
            if failure:
                res.failures.append(failure)
            else:
                res.objects.append(obj)
    return res


def sources_under(root: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()
                  and not any(s in p.relative_to(root).as_posix() for s in skip))


def archive(objects: list[Path], path: Path) -> Path:
    if path.exists():
        path.unlink()
    subprocess.run(["arm-none-eabi-ar", "rcs", str(path), *map(str, objects)], check=True)
    return path


def link(flags: MbedFlags, objects: list[Path], archives: list[Path], elf: Path) -> str:
    """Link with everything but mbed-os: its symbols stay unresolved (address 0), so the figures
    are tinygen + library + Arduino core + libc, never mbed-os. Returns the linker map text."""
    mapfile = elf.with_suffix(".map")
    cmd = ["arm-none-eabi-g++", *flags.ldflags, "-Wl,--gc-sections", "-Wl,--unresolved-symbols=ignore-all",
           "-Wl,-e,main", f"-Wl,-Map,{mapfile}", "-o", str(elf), *map(str, objects),
           "-Wl,--start-group", *map(str, archives), "-lstdc++", "-lsupc++", "-lm", "-lc", "-lgcc", "-lnosys",
           "-Wl,--end-group"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(f"link failed:\n{p.stderr[-4000:]}")
    return mapfile.read_text()


def size(elf: Path) -> dict:
    """Berkeley sizes: flash = text + data, RAM = data + bss."""
    out = subprocess.run(["arm-none-eabi-size", "-B", "-d", str(elf)], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1].split()
    text, data, bss = int(out[0]), int(out[1]), int(out[2])
    return {"flash": text + data, "ram": data + bss, "text": text, "data": data, "bss": bss}


_FLASH_SECTIONS = (".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array", ".fini_array",
                   ".preinit_array", ".init", ".fini", ".data")
_RAM_SECTIONS = (".data", ".bss", ".noinit")
_INPUT = re.compile(r"^ (\.\S+|COMMON)?\s*0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")


def attribute(map_text: str, classify) -> dict[str, dict[str, int]]:
    """Bytes per origin from a GNU ld map: classify(input file path) -> category name.
    Flash counts sections loaded from flash (.data's initialisers too), RAM .data and .bss."""
    totals: dict[str, dict[str, int]] = {}
    out_section = None
    pending = None
    in_body = False
    for line in map_text.splitlines():
        if line.startswith("Linker script and memory map"):
            in_body = True
            continue
        if not in_body:
            continue
        if line.startswith("/DISCARD/"):
            break
        if line and not line.startswith(" "):
            out_section = line.split()[0]
            continue
        m = _INPUT.match(line)
        if m is None:
            stripped = line.strip()
            pending = stripped if stripped.startswith(".") and " " not in stripped else None
            continue
        name = m.group(1) or pending
        pending = None
        if name is None or "load address" in line:
            continue
        nbytes, origin = int(m.group(3), 16), m.group(4).strip()
        if nbytes == 0 or out_section is None:
            continue
        cat = classify(origin)
        t = totals.setdefault(cat, {"flash": 0, "ram": 0})
        if out_section.startswith(_FLASH_SECTIONS):
            t["flash"] += nbytes
        if out_section.startswith(_RAM_SECTIONS):
            t["ram"] += nbytes
    return totals


def env_tree(var: str, must_have: str) -> Path | None:
    value = os.environ.get(var, "")
    if not value:
        return None
    p = Path(value).expanduser().resolve()
    if not (p / must_have).exists():
        raise AssertionError(f"{var}={value} does not look right: {must_have} is missing in it")
    return p
