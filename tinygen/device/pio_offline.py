"""tinygen's offline PlatformIO: the one way a pio process is started, and tinygen's own
PlatformIO home set up so that emulated boards build without the registry (the install half;
:mod:`tinygen.device.pio_build` is the run half).

PlatformIO core wants two things from the internet before the first build:
the ``tool-scons`` core package and the project's dev platform. Here both come
from this machine instead:

* ``tool-scons`` is made from the SCons that pip installed (a copy of its
  ``SCons`` package, a ``scons.py`` launcher, ``package.json`` and the
  ``.piopm`` metadata PlatformIO checks), labelled with the version this
  PlatformIO core requires (``platformio.dependencies.get_core_dependencies``,
  "~4.41101.0" for core 6.2 = SCons 4.11.1).
* tinygen's dev platform ``tinygen-mps2`` (firmware/platformio/tinygen-mps2)
  is installed as a symlink (``pio pkg install -g -p symlink://...``), so
  edits to it apply at once. Generated projects then say
  ``platform = tinygen-mps2`` and stay machine-independent.

Every pio process gets :func:`pio_env` (through :func:`run_pio`), which turns off telemetry and
the upgrade checks, the only other things that would reach for the network.

All of this lives in tinygen's own PlatformIO home (:func:`tinygen_core_dir`),
used for emulated boards only. Real boards (esp32, nano33ble) build and upload
with the user's PlatformIO as installed: tinygen writes nothing into
~/.platformio or $PLATFORMIO_CORE_DIR.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tinygen.common.errors import ToolFailure
from tinygen.common.escape import UnsafeText, pio_path, terminal
from tinygen.common.paths import firmware_dir, tinygen_pio_home

PLATFORM_NAME = "tinygen-mps2"
# Every dev platform of tinygen's own, all linked into the offline core (tinygen-riscv: qemu-rv32).
PLATFORM_NAMES = (PLATFORM_NAME, "tinygen-riscv")
SCONS_PACKAGE = "tool-scons"
# PlatformIO core 6.2's requirement, used only if platformio cannot be imported.
_FALLBACK_SCONS_REQUIREMENT = "~4.41101.0"
# Bump when the layout of the tool-scons package written here changes.
_SCONS_LAYOUT = 1

_SCONS_LAUNCHER = '''\
"""SCons launcher written by tinygen (tinygen/device/pio_offline.py) for PlatformIO.

Runs the SCons copied next to this file (scons-local/), made from PyPI's
SCons {scons_version}.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scons-local"))

from SCons.Script.Main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
'''


# --------------------------------------------------------------------------
# where things are


def platform_dir(name: str = PLATFORM_NAME) -> Path:
    """A dev platform (default tinygen-mps2) inside tinygen's firmware/ tree."""
    return firmware_dir() / "platformio" / name


def tinygen_core_dir() -> Path:
    """tinygen's own PlatformIO home, for emulated boards: $TINYGEN_HOME/platformio, else
    ${XDG_DATA_HOME:-~/.local/share}/tinygen/platformio.

    Never the user's ~/.platformio or $PLATFORMIO_CORE_DIR: the offline core writes a tool-scons
    package that is not PlatformIO's, links the tinygen-mps2 platform and changes appstate
    settings, none of which belongs in an installation the user builds other projects with.
    Data (not cache) dir, because it holds installed packages that take a while to recreate.
    """
    return tinygen_pio_home()  # in tinygen.common.paths: codegen names it in platformio.ini too


def pio_command() -> list[str] | None:
    """argv prefix that runs PlatformIO, or None when it is not installed.

    Prefers this interpreter's platformio (``python -m platformio``) so the
    build runs in the same environment as tinygen; falls back to ``pio`` on PATH.
    """
    if importlib.util.find_spec("platformio") is not None:
        return [sys.executable, "-P", "-m", "platformio"]
    for name in ("pio", "platformio"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


_INSTALLATION_VARS = ("PLATFORMIO_CORE_DIR", "PLATFORMIO_PACKAGES_DIR", "PLATFORMIO_PLATFORMS_DIR",
                      "PLATFORMIO_HOME_DIR")


def pio_env(home: Path | None = None) -> dict:
    """Environment for a pio subprocess that never goes to the network.

    ``home`` is the PlatformIO core dir (PLATFORMIO_CORE_DIR) of an offline build; the user's
    variables that point at their installation are dropped then, so nothing is read from or
    written into it (an explicit cache dir stays: it only speeds builds up). None keeps the
    caller's PlatformIO as configured (real boards).
    """
    env = dict(os.environ)
    if home is not None:
        for key in _INSTALLATION_VARS:
            env.pop(key, None)
        env["PLATFORMIO_CORE_DIR"] = str(Path(home).resolve())
    env.update(
        {
            "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "no",
            # checks for a new core / core packages: once in 100 years, and
            # switched off altogether by the next variable (core 6.x)
            "PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL": "36500",
            "PLATFORMIO_DISABLE_UPGRADE_CHECK": "true",
            "PLATFORMIO_SETTING_CHECK_PRUNE_SYSTEM_THRESHOLD": "0",
            "PLATFORMIO_DISABLE_PROGRESSBAR": "true",
            "PLATFORMIO_NO_ANSI": "true",
            "PYTHONIOENCODING": "utf-8",
        }
    )
    return env


# --------------------------------------------------------------------------
# tool-scons from PyPI's SCons


def _scons_requirement() -> str:
    try:
        from platformio.dependencies import get_core_dependencies  # type: ignore
    except ImportError:
        return _FALLBACK_SCONS_REQUIREMENT
    return get_core_dependencies().get(SCONS_PACKAGE, _FALLBACK_SCONS_REQUIREMENT)


def _pio_scons_version(scons_version: str) -> str:
    """PlatformIO's tool-scons numbering: SCons X.Y.Z -> X.(X*10000 + Y*100 + Z).0."""
    nums = [int(n) for n in re.findall(r"\d+", scons_version)[:3]]
    nums += [0] * (3 - len(nums))
    major, minor, patch = nums
    return "%d.%d.0" % (major, major * 10000 + minor * 100 + patch)


def _pick_package_version(scons_version: str, requirement: str) -> str:
    """The version to label our package with: SCons's own if it satisfies
    PlatformIO's requirement, else the requirement's base version (SCons 4.x
    keeps its API, and PlatformIO only checks the label)."""
    ours = _pio_scons_version(scons_version)
    if _version_satisfies(ours, requirement):
        return ours
    base = re.sub(r"^[~^=<>!\s]+", "", requirement.split(",")[0]).strip()
    return base or ours


def _scons_source() -> tuple[Path, str]:
    spec = importlib.util.find_spec("SCons")
    if spec is None or not spec.submodule_search_locations:
        raise ToolFailure("SCons is not installed for this Python; run: pip install scons")
    src = Path(list(spec.submodule_search_locations)[0])
    version = ""
    init = src / "__init__.py"
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", init.read_text(encoding="utf-8"))
    if match:
        version = match.group(1)
    if not version:
        raise ToolFailure(f"cannot tell the version of SCons at {src}")
    return src, version


def _version_satisfies(version: str, requirement: str) -> bool:
    try:
        import semantic_version  # platformio depends on it
    except ImportError:
        # "~X.Y.Z" means X.Y.*: compare major.minor
        base = re.sub(r"^[~^=<>!\s]+", "", requirement.split(",")[0]).strip()
        return version.split(".")[:2] == base.split(".")[:2]
    try:
        return semantic_version.Version(version) in semantic_version.SimpleSpec(requirement)
    except ValueError:
        return False


def _scons_package_ok(pkg_dir: Path, requirement: str, scons_version: str) -> bool:
    """An installed tool-scons PlatformIO will accept. A genuine one from the
    registry is left alone; one made here is remade when pip's SCons changes."""
    try:
        meta = json.loads((pkg_dir / ".piopm").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (
        (meta.get("spec") or {}).get("owner") == "platformio"
        and _version_satisfies(str(meta.get("version")), requirement)
        and (pkg_dir / "scons.py").is_file()
    ):
        return False
    stamp_path = pkg_dir / ".tinygen.json"
    if not stamp_path.exists():
        return True
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        stamp.get("scons_version") == scons_version
        and stamp.get("layout") == _SCONS_LAYOUT
        and (pkg_dir / "scons-local" / "SCons" / "__init__.py").is_file()
    )


def _install_scons_package(core_dir: Path) -> Path:
    src, scons_version = _scons_source()
    requirement = _scons_requirement()
    version = _pick_package_version(scons_version, requirement)
    packages = core_dir / "packages"
    pkg_dir = packages / SCONS_PACKAGE
    if _scons_package_ok(pkg_dir, requirement, scons_version):
        return pkg_dir

    packages.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="_tmp_installing-tinygen-", dir=packages))
    try:
        tmp.chmod(0o755)
        shutil.copytree(
            src,
            tmp / "scons-local" / "SCons",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "docbook-xsl-*"),
        )
        (tmp / "scons.py").write_text(
            _SCONS_LAUNCHER.format(scons_version=scons_version), encoding="utf-8"
        )
        manifest = {
            "name": SCONS_PACKAGE,
            "version": version,
            "description": (
                f"SCons {scons_version} from PyPI, packaged offline by tinygen for PlatformIO"
            ),
            "keywords": ["build tool"],
            "homepage": "https://scons.org",
            "license": "MIT",
        }
        (tmp / "package.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        # What PlatformIO's package manager reads to match "platformio/tool-scons@<req>".
        piopm = {
            "type": "tool",
            "name": SCONS_PACKAGE,
            "version": version,
            "spec": {
                "owner": "platformio",
                "id": None,
                "name": SCONS_PACKAGE,
                "requirements": None,
                "uri": None,
            },
        }
        (tmp / ".piopm").write_text(json.dumps(piopm), encoding="utf-8")
        (tmp / ".tinygen.json").write_text(
            json.dumps({"scons_version": scons_version, "layout": _SCONS_LAYOUT}),
            encoding="utf-8",
        )
        if pkg_dir.exists() or pkg_dir.is_symlink():
            # "_tmp_installing*" folders are invisible to PlatformIO
            old = packages / f"_tmp_installing-old-{SCONS_PACKAGE}-{os.getpid()}"
            os.replace(pkg_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, pkg_dir)
        except OSError:
            # another process won the race; keep its copy if it is good
            if not _scons_package_ok(pkg_dir, requirement, scons_version):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return pkg_dir


# --------------------------------------------------------------------------
# the dev platform


def _platform_link_ok(core_dir: Path, target: Path, name: str = PLATFORM_NAME) -> bool:
    link = core_dir / "platforms" / f"{name}.pio-link"
    try:
        data = json.loads(link.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    uri = (data.get("spec") or {}).get("uri") or ""
    if not uri.startswith("symlink://"):
        return False
    linked = Path(uri[len("symlink://"):])
    if not linked.is_absolute():
        linked = Path(data.get("cwd", "")) / linked
    try:
        return linked.resolve() == target.resolve()
    except OSError:
        return False


def _configure_core_state(core_dir: Path) -> None:
    """Settings in the core dir itself, so that a plain ``pio run`` typed by a
    user (without :func:`pio_env`) stays offline too: no telemetry, no
    upgrade check (unless the user chose otherwise). Also, a core dir last
    used by another PlatformIO version makes the next pio command 'upgrade'
    its core packages from the registry: record the running version."""
    state_path = core_dir / "appstate.json"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            state = {}
    except (OSError, ValueError):
        state = {}
    changed = False
    try:
        from platformio import __version__ as pio_version  # type: ignore
    except ImportError:
        pio_version = None
    if pio_version and state.get("last_version") not in (None, pio_version):
        state["last_version"] = pio_version
        changed = True
    settings = state.setdefault("settings", {})
    for key, value in (("check_platformio_interval", 36500), ("enable_telemetry", False)):
        if key not in settings:
            settings[key] = value
            changed = True
    if changed:
        tmp = state_path.with_name(f".appstate.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, state_path)


def run_pio(args: list[str], core_dir: Path | None, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """``pio <args>`` with :func:`pio_env` (``core_dir`` None: the user's PlatformIO), stdout and
    stderr together; ToolFailure (one line) when pio is missing or runs past ``timeout``."""
    cmd = pio_command()
    if cmd is None:
        raise ToolFailure("PlatformIO is not installed (pio not found); run: pip install platformio")
    try:
        return subprocess.run(
            cmd + args,
            cwd=str(cwd) if cwd else None,
            env=pio_env(core_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolFailure(f"pio {' '.join(args[:2])} did not finish within {timeout:.0f} s") from exc


def ensure_offline_core(core_dir: Path | None = None) -> None:
    """Make a PlatformIO core dir build tinygen-mps2 and tinygen-riscv projects without the network.

    Idempotent and cheap once done: installs ``tool-scons`` (from pip's SCons)
    into ``<core>/packages`` and links tinygen's dev platforms (PLATFORM_NAMES) into
    ``<core>/platforms``. ``core_dir`` None means :func:`tinygen_core_dir`.
    """
    core = Path(core_dir).expanduser() if core_dir is not None else tinygen_core_dir()
    try:
        pio_path(core.absolute(), "tinygen's PlatformIO home (TINYGEN_HOME)")
        core.mkdir(parents=True, exist_ok=True)
        core = core.resolve()
        _configure_core_state(core)
        _install_scons_package(core)
    except UnsafeText as exc:
        raise ToolFailure(str(exc)) from None
    except OSError as exc:
        raise ToolFailure(f"cannot set up tinygen's PlatformIO home {terminal(str(core))}: "
                          f"{exc.strerror or exc}; set TINYGEN_HOME to a writable directory") from None

    for name in PLATFORM_NAMES:
        _link_platform(core, name)


def _link_platform(core: Path, name: str) -> None:
    pdir = platform_dir(name)
    if not (pdir / "platform.json").is_file():
        raise ToolFailure(f"the {name} dev platform is missing at {pdir}; reinstall tinygen")
    if _platform_link_ok(core, pdir, name):
        return
    stale = core / "platforms" / f"{name}.pio-link"
    if stale.exists():
        stale.unlink()
    proc = run_pio(
        ["pkg", "install", "--global", "--platform", f"symlink://{pdir.resolve()}"],
        core_dir=core,
        timeout=300,
    )
    if proc.returncode != 0 or not _platform_link_ok(core, pdir, name):
        raise ToolFailure(
            f"could not install the {name} platform into {core}: "
            f"{last_error_line(proc.stdout)}"
        )


# --------------------------------------------------------------------------
# what went wrong, in one line

# Most telling first: compiler/linker diagnostics, then PlatformIO's own
# "Error: ..." lines, then SCons's "*** [target] Error 1".
_ERROR_PATTERNS = (
    re.compile(r"(: (fatal )?error:|undefined reference|multiple definition|"
               r"region `\S+' overflowed|ld: cannot find|ld returned)"),
    re.compile(r"^(Error|UnknownPackageError|UnknownPlatform|.*Exception):? "),
    re.compile(r"(\*\*\*|\berror\b)", re.I),
)


def last_error_line(output: str) -> str:
    """The most telling line of a pio run's output (see _ERROR_PATTERNS), else its last."""
    lines = [ln.strip() for ln in (output or "").splitlines() if ln.strip()]
    for pattern in _ERROR_PATTERNS:
        for line in reversed(lines):
            if pattern.search(line) and "ld returned" not in line:
                return line
        for line in reversed(lines):
            if pattern.search(line):
                return line
    return lines[-1] if lines else "(no output)"

