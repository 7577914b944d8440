"""Before `pio run` on a real board: can the first build get what it needs?

A real board's first build downloads the pinned PlatformIO platform, its framework and toolchain
packages and the project's libraries from the PlatformIO registry. Without the registry pio retries
for about a minute and ends with a cut-off HTTP error. This check answers in seconds instead:
whatever is already installed (read-only look at the PlatformIO core dir and the project's libdeps)
needs no registry; for anything missing, one short connection attempt to the registry decides.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path
from urllib.parse import urlparse

from tinygen.common.boards import Board
from tinygen.common.errors import ToolFailure
from tinygen.common.escape import terminal

REGISTRY_HOST = "api.registry.platformio.org"
CONNECT_TIMEOUT_S = 3.0


def core_dir() -> Path:
    env_dir = os.environ.get("PLATFORMIO_CORE_DIR")
    return Path(env_dir).expanduser() if env_dir else Path.home() / ".platformio"


def _dir(env_name: str, default: Path) -> Path:
    value = os.environ.get(env_name)
    return Path(value).expanduser() if value else default


def _installed_version(pkg_dir: Path) -> str | None:
    for name in ("platform.json", "library.json", "package.json"):
        try:
            return str(json.loads((pkg_dir / name).read_text(encoding="utf-8"))["version"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    try:  # Arduino-style libraries
        for line in (pkg_dir / "library.properties").read_text(encoding="utf-8").splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def missing_packages(project: Path, board: Board, runtime: str) -> list[str]:
    """What the first `pio run` of this project (built with ``runtime``) would download: 'name@version' for each."""
    core = core_dir()
    missing = []
    pio = board.platformio
    name, _, version = pio.platform.partition("@")
    platforms = _dir("PLATFORMIO_PLATFORMS_DIR", core / "platforms")
    # a second installed version of a package lives in "<name>@<version>"
    if not any(_installed_version(platforms / d) == version for d in (name, f"{name}@{version}")):
        missing.append(pio.platform)
    packages = _dir("PLATFORMIO_PACKAGES_DIR", core / "packages")
    missing += [p for p in pio.packages
                if not (packages / p).is_dir() and not any(packages.glob(f"{p}@*"))]
    tflm = board.tflm
    if runtime == "tflm" and tflm.library:
        libname = tflm.library.split("/", 1)[1]
        libdir = project / ".pio" / "libdeps" / board.id / libname
        if _installed_version(libdir) != tflm.version:
            missing.append(f"{tflm.library}@{tflm.version}")
    return missing


def registry_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """One TCP connection to the registry (or to the HTTPS proxy pio would use)."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    host, port = REGISTRY_HOST, 443
    if proxy:
        u = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = u.hostname or host, u.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_first_build(project: Path, board: Board, runtime: str) -> None:
    """Raise ToolFailure (one line) when the build needs the registry and the registry is out of reach."""
    from tinygen.device.pio_build import check_third_party_path, check_users_core_dir

    check_third_party_path(project.resolve())  # a path its platform's shell commands would act on
    check_users_core_dir()  # an unusable $PLATFORMIO_CORE_DIR is the first thing to fix
    missing = missing_packages(project, board, runtime)
    if not missing or registry_reachable():
        return
    raise ToolFailure(
        f"the first build for {board.id} needs the PlatformIO registry ({REGISTRY_HOST} is unreachable) to "
        f"download {', '.join(missing)} into {terminal(str(core_dir()))}; connect to the internet and run "
        f"`pio pkg install -d {terminal(shlex.quote(str(project)))}` once (later builds work offline), or try an emulated board: "
        "tinygen run --board qemu-m4")
