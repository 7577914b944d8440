"""Plan -> {relative path: bytes}.  Pure: reads templates and firmware sources, writes nothing.

Same plan, same bytes: no timestamps, sorted keys, fixed zip dates.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from tinygen.common.version import VERSION as __version__
from tinygen.common import escape
from tinygen.codegen import model_library, protocol_header, tflm_registrations
from tinygen.analysis.ops import TFLM_RESOLVER_METHODS
from tinygen.common.boards import is_emulated
from tinygen.common.paths import firmware_dir, pio_home_ini_spelling, templates_dir, tinygen_pio_home
from tinygen.codegen.plan import Plan
from tinygen.codegen.project import MANIFEST_VERSION
from tinygen.analysis.vectors import npz_bytes



def _env() -> jinja2.Environment:
    # autoescape is HTML escaping, wrong for C and ini: every variable that can carry user text
    # goes through the filter for its context (tinygen/common/escape.py) instead.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    env.filters.update(escape.FILTERS)
    return env


def hex_array(data: bytes, per_line: int = 12) -> str:
    lines = []
    for i in range(0, len(data), per_line):
        lines.append("  " + " ".join(f"0x{b:02x}," for b in data[i: i + per_line]))
    return "\n".join(lines)


def _copy_dir(out: dict[str, bytes], src: Path, dest: str) -> None:
    for p in sorted(src.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            out[f"{dest}/{p.relative_to(src).as_posix()}"] = p.read_bytes()


def manifest(plan: Plan) -> dict:
    m = plan.model
    it, ot = plan.io.input, plan.io.output
    return {
        "manifest_version": MANIFEST_VERSION,
        "tinygen_version": __version__,
        "board": plan.board.id,
        "runtime": plan.runtime,
        "name": plan.name,
        "source": plan.source,
        "task": plan.task,
        "model_sha256": m.sha256,
        "model_file": "model.tflite",
        "model_bytes": len(m.raw),
        "input": {"shape": list(it.shape), "dtype": it.dtype, "scale": it.scale, "zero_point": it.zero_point},
        "output": {"shape": list(ot.shape), "dtype": ot.dtype, "scale": ot.scale, "zero_point": ot.zero_point},
        "ops": plan.analysis.ops,
        "params": plan.analysis.params,
        "macs": plan.analysis.macs,
        "arena": plan.arena.as_dict(),
        "compiled_arena_bytes": plan.compiled.peak_bytes if plan.compiled else None,
        "quantization": plan.quantization_note,
        "quality": plan.quality,
        "budget": plan.budget,
        "vectors": {"file": "vectors/reference.npz", "count": int(len(plan.vectors["inputs"]))},
        "serial": {"baud": plan.board.serial.baud},
        **({"frontend": dict(plan.frontend)} if plan.frontend is not None else {}),
    }


def render(plan: Plan) -> dict[str, bytes]:
    env = _env()
    m, board, a = plan.model, plan.board, plan.analysis
    emulated = is_emulated(board)
    lib_deps: list[str] = []
    build_flags: list[str] = list(board.platformio.build_flags)
    custom = [("version", __version__), ("board", board.id), ("runtime", plan.runtime),
              ("model_sha256", m.sha256), ("vectors", "vectors/reference.npz")]
    # TFLM from a source tree: on the bare-metal mps2 HAL the tinygen-mps2 platform compiles the
    # tree itself (custom_tinygen_tflm_dir; Arduino-only files left out, our platform file added);
    # on Arduino boards PlatformIO takes it as a library.
    tflm_tree = Path(plan.tflm_dir).resolve().as_posix() if plan.runtime == "tflm" and plan.tflm_dir else None
    if tflm_tree is not None:
        escape.pio_path(tflm_tree, "--tflm-dir")
    tflm_bare_metal = tflm_tree is not None and board.hal == "mps2"
    tflm_source: list[str] = []  # how the README names the TFLM the project builds against
    if plan.runtime == "tflm":
        if tflm_bare_metal:
            custom += [("tflm_dir", tflm_tree), ("tflm_ops", " ".join(a.ops))]
            tflm_source = [f"source tree {tflm_tree}, compiled by the tinygen-mps2 platform"]
        elif tflm_tree:
            lib_deps = tflm_source = [f"symlink://{tflm_tree}"]
        else:
            lib_deps = tflm_source = list(board.tflm.lib_deps)
    # Real boards build TFLM as its own release build does (issue 28); [env:<board>_tflm_debug] unflags it.
    tflm_release_flags = list(board.platformio.tflm_release_flags) \
        if plan.runtime == "tflm" and not emulated else []
    build_flags += tflm_release_flags
    regs = tflm_registrations.registrations(m, a.ops, board, plan.tflm_dir) if plan.runtime == "tflm" else []
    it, ot = plan.io.input, plan.io.output
    fe_spec = fe_rq = None
    if plan.frontend is not None:
        from tinygen.intake.frontend import for_model

        fe_spec, fe_rq = for_model(plan.frontend, it.shape, it.scale, it.zero_point)
    ctx = dict(
        frontend=fe_spec, frontend_samples=fe_spec.n_samples if fe_spec else 0,
        frontend_channels=fe_spec.channels if fe_spec else 0,
        version=__version__, source=plan.source, sha256=m.sha256, board=board, runtime=plan.runtime,
        name=plan.name, model_len=len(m.raw), ops=a.ops, params=a.params, macs=a.macs, arena=plan.arena,
        compiled_peak=plan.compiled.peak_bytes if plan.compiled else None, budget=plan.budget,
        quantization_note=plan.quantization_note, lib_deps=lib_deps, tflm_source=tflm_source,
        build_flags=build_flags, custom=custom,
        emulated=emulated, n_vectors=len(plan.vectors["inputs"]), input_shape=list(it.shape),
        output_shape=list(ot.shape), has_float="float_outputs" in plan.vectors,
        has_float_inputs="float_inputs" in plan.vectors, has_labels="labels" in plan.vectors,
        resolver_methods=TFLM_RESOLVER_METHODS, tflm_registrations=regs,
        tflm_variant_headers=tflm_registrations.variant_headers(regs),
        tflm_library=(board.tflm.library.partition("/")[2], str(board.tflm.version))
        if plan.runtime == "tflm" and not plan.tflm_dir and board.tflm.library else None,
        tflm_release_flags=tflm_release_flags, native_usb=board.serial.native_usb,
        tflm_variant_source=tflm_registrations.library_int8_variants(board, plan.tflm_dir)[1],
        tflm_header=None if plan.tflm_dir else board.tflm.header,
        example_src_filter=model_library.EXAMPLE_SRC_FILTER,
        io_quant=(float(it.scale), int(it.zero_point), float(ot.scale), int(ot.zero_point)),
        class_labels=list(plan.class_names or ()),
        recipe=plan.recipe,
        # emulated boards: platformio.ini's core_dir, so a plain `pio run` builds with tinygen's offline platform
        pio_core_dir=pio_home_ini_spelling(tinygen_pio_home()) if emulated else None,
    )
    out: dict[str, bytes] = {}

    def tpl(name: str, **extra) -> bytes:
        return env.get_template(name).render(**ctx, **extra).encode()

    out["platformio.ini"] = tpl("platformio.ini.j2")
    out["README.md"] = tpl("README.md.j2")
    out["model.tflite"] = m.raw
    out["vectors/reference.npz"] = npz_bytes(plan.vectors)

    fw = firmware_dir()
    out["src/tg_protocol.h"] = protocol_header.render_c_header().encode()
    out["src/tg_model_info.h"] = protocol_header.render_model_info_header(
        model_sha256=m.sha256, input_shape=it.shape, output_shape=ot.shape,
        input_scale=it.scale, input_zero_point=it.zero_point,
        output_scale=ot.scale, output_zero_point=ot.zero_point,
        frontend_samples=fe_spec.n_samples if fe_spec else None,
        frontend_frame=(fe_spec.frame_length, fe_spec.fft_size, fe_spec.bands) if fe_spec else None).encode()
    for f in ("tg_app.c", "tg_app.h", "tg_app_config.h", "tg_runtime.h", "tg_runtime_lib.c"):
        out[f"src/{f}"] = (fw / "app" / f).read_bytes()
    out["src/tg_hal.h"] = (fw / "hal" / "tg_hal.h").read_bytes()
    hal = board.hal
    _copy_dir(out, fw / "hal" / hal, "src")  # the HAL and its entry point (main.c, or main.cpp on Arduino)
    if plan.runtime == "tflm" and tflm_bare_metal:
        _copy_dir(out, fw / "tflm", "src")  # DebugLog, InitializeTarget, ticks (tg_hal): board support
    out.update(model_library.render(plan, tpl, hex_array))
    if fe_spec is not None:  # the front end inside the model library: predict_raw is the library's
        from tinygen.codegen.frontend_c import emit_config, frontend_sources

        for fname, text in sorted({**frontend_sources(), **emit_config(fe_spec, fe_rq)}.items()):
            out[f"{model_library.LIB}/src/{fname}"] = text.encode()
    if not emulated:
        out[ARDUINO_ZIP] = arduino_zip(out)
    # Every file of the project, so that --force later replaces exactly these (codegen/project.py).
    man = {**manifest(plan), "files": sorted({*out, "tinygen.json"})}
    out["tinygen.json"] = (json.dumps(man, indent=2, sort_keys=True) + "\n").encode()
    return out


ARDUINO_ZIP = "tinygen_model.zip"


def arduino_zip(files: dict[str, bytes]) -> bytes:
    """lib/tinygen_model/ as an Arduino IDE library .zip (Sketch > Include Library > Add .ZIP Library):
    one top folder, tinygen_model/. Deterministic: sorted names, fixed dates and permissions."""
    import io
    import zipfile

    prefix = f"{model_library.LIB}/"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(p for p in files if p.startswith(prefix)):
            info = zipfile.ZipInfo("tinygen_model/" + path[len(prefix):], date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, files[path], compresslevel=9)
    return buf.getvalue()
