"""Build and run the libFuzzer harness for the firmware frame parser.

    python tests/fuzz/fuzz_build.py [--model big|small] [--sealed] [--runs N | --max-total-time S]

builds tests/fuzz/fuzz_frames.c with the real firmware/app/tg_app.c (clang,
-fsanitize=fuzzer,address,undefined), writes a seed corpus and a dictionary
made with tinygen.common.protocol's own encoders, and runs it. Crashing inputs land in
the work directory (--workdir, default a fresh temp dir) as crash-*, libFuzzer's
output in <harness>.log there.
The pytest wrapper is tests/fuzz/test_fuzz.py.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FW = REPO / "firmware"
sys.path.insert(0, str(REPO))

from tinygen.codegen import protocol_header as H
from tinygen.common import protocol as P
from tinygen.device import framing as F  # noqa: E402

_BASE = dict(model_sha256=hashlib.sha256(b"tinygen fuzz model").hexdigest(), input_scale=0.0078125,
             input_zero_point=-3, output_scale=1 / 60, output_zero_point=5)
# test_runtime.c answers output = saturate(2 * input - 1): same byte count both ways.
# small: receive buffer of 12 + 64 (PING's floor); big: 0xFF COBS blocks fit in a frame.
MODELS = {"small": dict(_BASE, input_shape=(3, 4), output_shape=(12,)),
          "big": dict(_BASE, input_shape=(20, 20), output_shape=(400,))}
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
          "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def clang() -> str | None:
    return shutil.which("clang")


def libfuzzer_works(workdir: Path) -> bool:
    """clang can link -fsanitize=fuzzer (Debian: libclang-rt-14-dev)."""
    if clang() is None:
        return False
    src = workdir / "probe.c"
    src.write_text("#include <stddef.h>\n#include <stdint.h>\n"
                   "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
    r = subprocess.run([clang(), "-fsanitize=fuzzer", str(src), "-o", str(workdir / "probe")], capture_output=True)
    return r.returncode == 0


def input_bytes(model: dict) -> int:
    n = 1
    for d in model["input_shape"]:
        n *= d
    return n


def rx_payload_max(model: dict) -> int:
    """The firmware's PING limit: max(input tensor bytes, MIN_RX_PAYLOAD)."""
    return max(input_bytes(model), P.MIN_RX_PAYLOAD)


def build(workdir: Path, model: str = "big", sealed: bool = False) -> Path:
    gen = workdir / f"gen-{model}"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / "tg_protocol.h").write_text(H.render_c_header())
    (gen / "tg_model_info.h").write_text(H.render_model_info_header(**MODELS[model]))
    exe = workdir / f"fuzz_frames_{model}{'_sealed' if sealed else ''}"
    cmd = [clang(), *CFLAGS, *(["-DTG_FUZZ_SEALED"] if sealed else []), f"-I{gen}", f"-I{FW / 'hal'}",
           f"-I{FW / 'app'}", str(FW / "app" / "tg_app.c"), str(REPO / "tests" / "fixtures" / "protocol" /
                                                               "test_runtime.c"), str(HERE / "fuzz_frames.c"),
           "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{r.stderr}")
    return exe


def _requests(model: str) -> list[F.Frame]:
    n_in = input_bytes(MODELS[model])
    limit = rx_payload_max(MODELS[model])
    Fr = F.Frame
    return [Fr(P.Opcode.HELLO, 0x0101), Fr(P.Opcode.INFER, 0x0202, bytes((i * 37) & 0xFF for i in range(n_in))),
            Fr(P.Opcode.PING, 0x0303), Fr(P.Opcode.PING, 0x0404, b"\x01" * limit),
            Fr(P.Opcode.PING, 0x0505, bytes(range(256))[:limit]), Fr(P.Opcode.GET_STATS, 0x0606),
            Fr(P.Opcode.RESET_STATS, 0x0707), Fr(P.Opcode.HELLO, 0x0808, b"x"), Fr(0x42, 0x0909),
            Fr(P.Opcode.HELLO, 0x0A0A, version=2), Fr(P.Opcode.HELLO, 0x0B0B, is_reply=True),
            Fr(P.Opcode.LAYERS, 0x0C0C, bytes(n_in)), Fr(P.Opcode.PROFILE, 0x0D0D, bytes(n_in))]


def write_seeds(corpus: Path, model: str, sealed: bool) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    frames = _requests(model)
    if sealed:
        for i, f in enumerate(frames):
            (corpus / f"seed-{i:02d}").write_bytes(F.pack_raw(f)[:-P.CRC_BYTES])
        return
    for i, f in enumerate(frames):  # as DeviceLink sends them: a leading 0x00, the frame, 0x00
        (corpus / f"seed-{i:02d}").write_bytes(b"\x00" + F.encode_frame(f))
    session = b"".join(b"\x00" + F.encode_frame(f) for f in frames) + F.encode_frame(frames[5])
    (corpus / "seed-session").write_bytes(session)


def write_dict(path: Path) -> None:
    """Tokens libFuzzer splices in: whole encoded requests and their pieces."""
    tokens = {b"\x00", b"\xff", b"\x01\x01", b"\x02\x01"}
    for op in P.Opcode:
        raw = F.pack_raw(F.Frame(op, 0x0101))
        tokens.add(F.cobs_encode(raw))
        tokens.add(raw[:2])
    lines = [f'kw{i}="' + "".join(f"\\x{b:02x}" for b in t) + '"' for i, t in enumerate(sorted(tokens))]
    path.write_text("\n".join(lines) + "\n")


def run(exe: Path, workdir: Path, model: str, sealed: bool, *libfuzzer_args: str) -> tuple[int, str, int]:
    """Run the harness on a fresh seed corpus; (exit code, output, executions)."""
    corpus = workdir / f"corpus-{exe.name}"
    write_seeds(corpus, model, sealed)
    write_dict(workdir / "frames.dict")
    cmd = [str(exe), f"-dict={workdir / 'frames.dict'}", f"-artifact_prefix={workdir}/", "-print_final_stats=1",
           *libfuzzer_args, str(corpus)]
    log = workdir / f"{exe.name}.log"  # libFuzzer's progress, readable while a long run goes on
    with log.open("w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=workdir)
    out = log.read_text(errors="replace")
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    return r.returncode, out, int(m.group(1)) if m else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="big")
    ap.add_argument("--sealed", action="store_true", help="inputs are frames without CRC; the harness seals them")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--max-total-time", type=int)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("libfuzzer_args", nargs="*", help="more libFuzzer flags, after --")
    a = ap.parse_args(argv)
    if clang() is None:
        print("clang is not installed (Debian: apt-get install clang libclang-rt-14-dev)", file=sys.stderr)
        return 2
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="tinygen-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    exe = build(workdir, a.model, a.sealed)
    extra = [*([f"-runs={a.runs}"] if a.runs else []),
             *([f"-max_total_time={a.max_total_time}"] if a.max_total_time else []), *a.libfuzzer_args]
    rc, out, execs = run(exe, workdir, a.model, a.sealed, *extra)
    print(out[-4000:])
    print(f"{exe.name}: {execs} executions, exit {rc}, work dir {workdir}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
