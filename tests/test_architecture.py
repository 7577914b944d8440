"""The package's shape: data flows one way through the stage subpackages.

Each subpackage may import only the stages before it (its docstring says which), so a
newcomer can read the pipeline off the folder names.  These tests parse every module's
imports (module level and inside functions) and fail on an import against the flow, on
a module-level import cycle, and on a new module dropped at the top of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tinygen

PKG = Path(tinygen.__file__).resolve().parent

# The order data flows in.  A module may import its own stage and any earlier one.
STAGES = ("common", "tflite", "intake", "analysis", "codegen",
          "compress",  # trains like intake, but deciding a fit needs codegen's budget
          "device", "verification", "api", "cli")
# tinygen.testing (the pytest plugin) consumes the public API like the CLI does; neither imports the other.
STAGES = STAGES[:STAGES.index("api") + 1] + ("testing",) + STAGES[STAGES.index("api") + 1:]
TOP_LEVEL = {"__init__.py", "__main__.py", "api.py"}


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "tinygen":
        return None
    if len(parts) == 1:
        return STAGES.index("api")  # `import tinygen` / `from tinygen import __version__`
    return STAGES.index(parts[1]) if parts[1] in STAGES else None


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PKG / rel).with_suffix(".py").is_file() or (PKG / rel / "__init__.py").is_file()


def imports(source: str, module: str, *, top_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for every tinygen import in ``source``."""
    tree = ast.parse(source)
    nodes = tree.body if top_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from tinygen.codegen import compiled` imports the submodule, not just the package
            subs = [f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")]
            found += [(s, node.lineno) for s in subs] or [(target, node.lineno)]
    return [(m, line) for m, line in found if m == "tinygen" or m.startswith("tinygen.")]


def violations(source: str, module: str) -> list[str]:
    own = stage_of(module)
    out = []
    for target, line in imports(source, module):
        st = stage_of(target)
        if st is not None and own is not None and st > own:
            out.append(f"{module}:{line} imports {target} ({STAGES[st]} comes after {STAGES[own]})")
    return out


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def test_every_module_sits_in_a_stage():
    stray = [p.name for p in PKG.glob("*.py") if p.name not in TOP_LEVEL]
    assert not stray, f"modules at the top of the package belong in a stage subpackage: {stray}"
    for name in package_modules():
        if name not in ("tinygen", "tinygen.__main__"):
            assert stage_of(name) is not None, f"{name} is in no stage"


def test_imports_follow_the_data_flow():
    problems = []
    for name, path in package_modules().items():
        problems += violations(path.read_text(), name)
    assert not problems, "\n".join(problems)


def test_no_import_cycles_at_module_level():
    mods = package_modules()
    graph = {name: {t for t, _ in imports(p.read_text(), name, top_only=True) if t in mods and t != name}
             for name, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_every_stage_states_what_it_may_import():
    for stage in STAGES:
        init = PKG / stage / "__init__.py"
        if stage == "api":
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"tinygen/{stage}/__init__.py must say what it owns and may import"


@pytest.mark.parametrize("source, module, bad", [
    ("from tinygen.device.pio import build\n", "tinygen.codegen.render", True),
    ("def f():\n    from tinygen.cli.main import out\n", "tinygen.device.pio", True),
    ("from tinygen.codegen import render\n", "tinygen.intake.sources", True),
    ("from . import quant\n", "tinygen.codegen.compiled.lowering.common", False),
    ("from tinygen.common.errors import TinygenError\n", "tinygen.tflite.model", False),
    ("from tinygen.analysis import reference\n", "tinygen.codegen.plan", False),
])
def test_the_checker_itself_catches_a_backward_import(source, module, bad):
    assert bool(violations(source, module)) is bad


# The one conductor (tinygen.api.building) calls intake, then codegen: codegen takes intake's values
# (the Source, the front end's definition, which it prints into C) but runs no intake step itself
# (training, loading, the int8 conversion), so the model's data never climbs back up from codegen.
CODEGEN_TAKES_FROM_INTAKE = {"tinygen.intake.sources": {"Source"}, "tinygen.intake.frontend": None}  # None: any name


def intake_steps_called(source: str, module: str) -> list[str]:
    """What ``source`` (a codegen module) imports from intake beyond CODEGEN_TAKES_FROM_INTAKE."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad += [f"{module}:{node.lineno} imports {a.name}" for a in node.names if a.name.startswith("tinygen.intake")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinygen.intake"):
            for a in node.names:
                target, name = (f"tinygen.intake.{a.name}", None) if node.module == "tinygen.intake" \
                    else (node.module, a.name)
                allowed = CODEGEN_TAKES_FROM_INTAKE.get(target, set())
                if allowed is not None and (name is None or name not in allowed):
                    bad.append(f"{module}:{node.lineno} imports {target}{'.' + name if name else ''}")
    return bad


def test_codegen_runs_no_intake_step():
    problems = []
    for name, path in package_modules().items():
        if name.startswith("tinygen.codegen"):
            problems += intake_steps_called(path.read_text(), name)
    assert not problems, "the conductor (api) runs intake's steps and hands codegen their values:\n" + \
        "\n".join(problems)


@pytest.mark.parametrize("source, bad", [
    ("from tinygen.intake.sources import Source, convert\n", True),
    ("def f():\n    from tinygen.intake import sources\n", True),
    ("import tinygen.intake.quantize\n", True),
    ("from tinygen.intake.sources import Source\n", False),
    ("from tinygen.intake.frontend import for_model\n", False),
    ("from tinygen.intake import frontend\n", False),
])
def test_the_conductor_check_itself(source, bad):
    assert bool(intake_steps_called(source, "tinygen.codegen.x")) is bad


def _first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycles_through_function_level_imports():
    """A lazy import inside a function hides a cycle from the module-level check (two modules
    that need each other's private helpers); count every import, wherever it is written.
    The package's own lazy exports (``tinygen/__init__.py``'s ``__getattr__``) are left out:
    they are how ``import tinygen`` stays cheap, and nothing inside the package goes through them."""
    mods = package_modules()
    graph = {name: {t for t, _ in imports(p.read_text(), name) if t in mods and t not in (name, "tinygen")}
             for name, p in mods.items() if name != "tinygen"}
    cycle = _first_cycle(graph)
    assert cycle is None, "import cycle (counting imports inside functions): " + " -> ".join(cycle)


def test_the_cycle_check_sees_imports_inside_functions():
    a = imports("def f():\n    from tinygen.codegen.compiled import quant\n", "tinygen.x")
    assert a == [("tinygen.codegen.compiled.quant", 2)]
    assert _first_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _first_cycle({"a": {"b"}, "b": set()}) is None


def test_op_lowering_is_one_module_per_kernel_family():
    """compiled/lowering/: one module per op family, named like the C file of its kernels
    (conv.py -> tg_conv.c), the shared helpers in common.py, and one alphabetical op table;
    no family imports another family."""
    from tinygen.codegen.compiled import lowering

    folder = PKG / "codegen" / "compiled" / "lowering"
    runtime = PKG.parent / "firmware" / "runtime"
    families = sorted(p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "common"))
    for fam in families:
        assert (runtime / f"tg_{fam}.c").is_file(), f"lowering/{fam}.py has no firmware/runtime/tg_{fam}.c"
        mod = f"tinygen.codegen.compiled.lowering.{fam}"
        others = [t for t, _ in imports((folder / f"{fam}.py").read_text(), mod)
                  if t.startswith("tinygen.codegen.compiled.lowering.") and not t.endswith(".common")]
        assert not others, f"{fam}.py imports another family: {others}"
    assert list(lowering.OPS) == sorted(lowering.OPS), "keep lowering.OPS in alphabetical order"
    for op, fn in lowering.OPS.items():
        target = getattr(fn, "func", fn)
        assert target.__module__.rsplit(".", 1)[1] in families, f"{op} is lowered outside a family module"


def test_tg_kernels_h_lists_every_kernel_file():
    """tg_kernels.h's file list is the map a reader uses to find a kernel: it names exactly the
    .c files in firmware/runtime/ (and kernel_sources() ships each of them)."""
    import re

    from tinygen.codegen.compiled import kernel_sources

    runtime = PKG.parent / "firmware" / "runtime"
    header = (runtime / "tg_kernels.h").read_text()
    listed = header.split(" * Files", 1)[1].split("internal headers", 1)[0]
    named = set(re.findall(r"\b(tg_\w+\.c)\b", listed))
    on_disk = {p.name for p in runtime.glob("*.c")}
    assert named == on_disk, f"tg_kernels.h lists {sorted(named - on_disk)} not on disk, misses {sorted(on_disk - named)}"
    assert on_disk <= set(kernel_sources())


def test_no_module_is_too_long_to_read():
    """One room per idea: no Python module over 600 lines, no C file (firmware/) over 700. A file
    that grows past that holds two ideas; split it where they part (as tg_conv.c / tg_depthwise_conv.c,
    api/ and lowering/ were)."""
    long_py = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
               if (n := len(p.read_text().splitlines())) > 600}
    firmware = PKG.parent / "firmware"
    long_c = {str(p.relative_to(PKG.parent)): n for p in firmware.rglob("*") if p.suffix in (".c", ".cc", ".h", ".cpp")
              if (n := len(p.read_text().splitlines())) > 700}
    assert not long_py and not long_c, f"too long: {long_py} {long_c}"


TESTS = Path(__file__).resolve().parent
TOP_TESTS = {"conftest.py", "test_architecture.py", "test_readme_commands.py"}


def test_tests_mirror_the_package():
    """Test files live in a folder named after what they test (a subpackage, or support/, regression/,
    fuzz/, cli_api/); only the whole-tree checks sit at the top."""
    assert {p.name for p in TESTS.glob("*.py")} == TOP_TESTS
    stages = set(STAGES) - {"api", "cli"}
    allowed = stages | {"compiled", "cli_api", "support", "regression", "fuzz", "fixtures"}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert folders <= allowed, sorted(folders - allowed)


def test_no_test_module_imports_another():
    """What tests share lives in tests/support/ (imported as support.<module>), never in a test file."""
    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(TESTS)}: {n}" for n in names if n.split(".")[-1].startswith("test_")]
    assert not offenders
