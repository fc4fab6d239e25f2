"""The layering of DESIGN.md, enforced: an AST walk over src/rnncap and a look at sys.modules after real imports.

The rules, each a test below:

- The engine (``ENGINE``: backend, nn, models, decode, sampling, optim, train, gradcheck, text, files, checks)
  imports none of ``HEAVY`` (torch, torchvision, onnx, onnxruntime, h5py, PIL, matplotlib) and none of the outer
  layers (``OUTER``: data, encoders, metrics' neighbours apps, report, cli), at module level or inside a function.
  One exception, ``LAZY_EXCEPTIONS``: the trainer may import ``rnncap.report.plots`` inside a function, to draw its
  loss curves when asked to.
- What an engine module loads when imported, followed through every rnncap import transitively (parent packages'
  ``__init__`` included), holds no heavy library and no outer layer either: a careless import in ``rnncap/__init__``
  or in a module the engine may use (the metrics) would otherwise bring Pillow or h5py into the engine.
- matplotlib is imported inside functions only, anywhere in the package: it is slow to import and only plots need it.
- The data readers and the metrics import nothing of ``rnncap.train`` but ``rnncap.train.data`` (CaptionData).
- ``import rnncap.metrics`` loads no h5py, through any chain of imports.
- Tests: no test module imports another test module or conftest (shared builders live in helpers.py).

Imports under ``if TYPE_CHECKING:`` never run: they count for the direct rules (the engine does not depend on the
outer layers, even for types) and not for what a module loads.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent
PACKAGE = "rnncap"
ENGINE = ("backend", "nn", "models", "decode", "sampling", "optim", "train", "gradcheck", "text", "files", "checks")
OUTER = ("data", "encoders", "apps", "report", "cli")
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "h5py", "PIL", "matplotlib")
# (importing package, imported module) pairs allowed inside a function only, with the reason.
LAZY_EXCEPTIONS = {
    ("train", "report.plots"): "the trainer draws its loss curves when asked to, and only then loads matplotlib",
}


@dataclass(frozen=True)
class Import:
    """One imported module, as written in one import statement of ``module``."""

    module: str  # the importing module, dotted
    target: str  # the imported module, dotted and absolute
    where: str  # "src/rnncap/x.py:12", for messages
    statement: str  # the statement's source text
    lazy: bool  # inside a function: runs when the function does
    typing_only: bool  # under `if TYPE_CHECKING:`: never runs

    @property
    def runs_on_import(self) -> bool:
        return not self.lazy and not self.typing_only

    def __str__(self) -> str:
        return f"{self.where}: {self.statement}"


@dataclass(frozen=True)
class Package:
    """The modules of a package under ``root`` (dotted name -> file) and every import statement they hold."""

    root: Path
    files: dict[str, Path]
    imports: dict[str, list[Import]]


def in_layer(module: str, layer: str) -> bool:
    """Whether the dotted ``module`` is ``layer`` or inside it (``layer`` relative to the package, e.g. "train")."""
    full = f"{PACKAGE}.{layer}"
    return module == full or module.startswith(full + ".")


def top_name(module: str) -> str:
    return module.split(".", 1)[0]


def find_modules(root: Path) -> dict[str, Path]:
    """Every module of ``root / PACKAGE`` by its dotted name (a package by its own name, for its __init__.py)."""
    files = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(
    nodes: Iterable[ast.AST], lazy: bool = False, typing_only: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """(statement, lazy, typing_only) for every import statement in or under ``nodes``."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy, typing_only
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _import_nodes(ast.iter_child_nodes(node), True, typing_only)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.body, lazy, True)
            yield from _import_nodes(node.orelse, lazy, typing_only)
        else:
            yield from _import_nodes(ast.iter_child_nodes(node), lazy, typing_only)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, files: dict[str, Path]) -> list[str]:
    """The absolute dotted modules one statement imports (``from pkg import sub`` imports the submodule)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in files]
    return submodules or [base]


def read_package(root: Path) -> Package:
    """Parse every module of ``root / PACKAGE`` and collect its imports."""
    files = find_modules(root)
    imports: dict[str, list[Import]] = {}
    for module, path in files.items():
        source = path.read_text(encoding="utf-8")
        is_package = path.name == "__init__.py"
        found = []
        for node, lazy, typing_only in _import_nodes(ast.parse(source, filename=str(path)).body):
            statement = " ".join((ast.get_source_segment(source, node) or "").split())
            where = f"{root.name}/{path.relative_to(root).as_posix()}:{node.lineno}"
            for target in _targets(node, module, is_package, files):
                found.append(Import(module, target, where, statement, lazy, typing_only))
        imports[module] = found
    return Package(root, files, imports)


def loaded_modules(target: str, files: dict[str, Path]) -> list[str]:
    """What importing ``target`` runs: each of its parent packages of ours, then itself (a library by its top name)."""
    if top_name(target) != PACKAGE:
        return [top_name(target)]
    parts = target.split(".")
    return [name for name in (".".join(parts[: i + 1]) for i in range(len(parts))) if name in files]


def import_chains(package: Package, start: str) -> dict[str, list[Import]]:
    """Every module that ``import start`` loads, with the chain of import statements that loads it."""
    chains: dict[str, list[Import]] = {name: [] for name in loaded_modules(start, package.files)}
    queue = deque(chains)
    while queue:
        module = queue.popleft()
        for imp in package.imports.get(module, []):
            if not imp.runs_on_import:
                continue
            for loaded in loaded_modules(imp.target, package.files):
                if loaded not in chains:
                    chains[loaded] = [*chains[module], imp]
                    if loaded in package.files:
                        queue.append(loaded)
    return chains


def describe(chain: list[Import]) -> str:
    return "\n    -> ".join(map(str, chain))


# ---- the rules, as functions of a parsed package (so that they can be shown to catch a bad import) --------------


def engine_imports(package: Package) -> list[str]:
    """Imports, at any level, of a heavy library or an outer layer by an engine module."""
    problems = []
    for module, imports in package.imports.items():
        layer = next((name for name in ENGINE if in_layer(module, name)), None)
        if layer is None:
            continue
        for imp in imports:
            if top_name(imp.target) in HEAVY:
                problems.append(f"{imp} (the engine imports none of {', '.join(HEAVY)})")
            elif any(in_layer(imp.target, outer) for outer in OUTER):
                allowed = imp.lazy and any(
                    layer == importer and imp.target == f"{PACKAGE}.{target}" for importer, target in LAZY_EXCEPTIONS
                )
                if not allowed:
                    problems.append(f"{imp} (the engine imports none of rnncap.{', rnncap.'.join(OUTER)})")
    return problems


def is_forbidden_in_engine(module: str) -> bool:
    return top_name(module) in HEAVY or any(in_layer(module, outer) for outer in OUTER)


def engine_loads(package: Package) -> list[str]:
    """Heavy libraries or outer layers that importing an engine module loads, through any chain of imports: each
    import statement that crosses the boundary once, with the chain from the first engine module it reaches."""
    problems, crossings = [], set()
    for module in package.files:
        if not any(in_layer(module, name) for name in ENGINE):
            continue
        for loaded, chain in import_chains(package, module).items():
            crossing = next((imp for imp in chain if is_forbidden_in_engine(imp.target)), None)
            if is_forbidden_in_engine(loaded) and crossing not in crossings:
                crossings.add(crossing)
                problems.append(f"import {module} loads {loaded}:\n    {describe(chain)}")
    return problems


def module_level_matplotlib(package: Package) -> list[str]:
    """matplotlib imported where it runs on import."""
    return [
        f"{imp} (import matplotlib inside the function that draws)"
        for imports in package.imports.values()
        for imp in imports
        if top_name(imp.target) == "matplotlib" and imp.runs_on_import
    ]


def trainer_imports(package: Package) -> list[str]:
    """Imports of rnncap.train other than rnncap.train.data by the data readers or the metrics."""
    return [
        f"{imp} (data and metrics import CaptionData from rnncap.train.data, never the trainer)"
        for module, imports in package.imports.items()
        if in_layer(module, "data") or in_layer(module, "metrics")
        for imp in imports
        if in_layer(imp.target, "train") and not in_layer(imp.target, "train.data")
    ]


def metrics_loads_h5py(package: Package) -> list[str]:
    """The chain of imports through which ``import rnncap.metrics`` would load h5py, if any."""
    chain = import_chains(package, f"{PACKAGE}.metrics").get("h5py")
    return [] if chain is None else [f"import rnncap.metrics loads h5py:\n    {describe(chain)}"]


RULES = [engine_imports, engine_loads, module_level_matplotlib, trainer_imports, metrics_loads_h5py]


@pytest.fixture(scope="module")
def package() -> Package:
    return read_package(SRC)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_package_keeps_its_layers(package: Package, rule) -> None:
    problems = rule(package)
    assert not problems, f"{rule.__doc__}\n" + "\n".join(problems)


def test_the_walk_sees_the_whole_package(package: Package) -> None:
    assert {f"{PACKAGE}.{name}" for name in ENGINE + OUTER + ("metrics",)} <= set(package.files)
    assert sum(len(imports) for imports in package.imports.values()) > 100
    # The engine's imports of its own modules are followed: models load nn, decode and text.
    chains = import_chains(package, f"{PACKAGE}.models")
    assert {f"{PACKAGE}.nn", f"{PACKAGE}.decode", f"{PACKAGE}.text"} <= set(chains)


def write_bad_package(root: Path) -> None:
    """A small rnncap with one break of each rule, each on a known line."""
    modules = {
        "__init__.py": "from rnncap import models\n",
        "models/__init__.py": "",
        "models/base.py": "import numpy as np\n\n\ndef draw():\n    from rnncap.report import plots\n",
        "optim.py": '"""Update rules."""\n\nimport h5py\n',
        "train/__init__.py": "from rnncap.train.data import CaptionData\n",
        "train/data.py": "",
        # The trainer's lazy plots are the exception; the metrics it imports load the data layer.
        "train/trainer.py": "import rnncap.metrics\n\n\ndef plot():\n    from rnncap.report import plots\n",
        "text.py": "from rnncap.files import replacing\n",
        "files.py": "from rnncap.report.gallery import write_gallery\n",
        "report/__init__.py": "",
        "report/plots.py": "from matplotlib.figure import Figure\n",
        "report/gallery.py": "from PIL import Image\n",
        "data/__init__.py": "",
        "data/store.py": "import h5py\n\nfrom rnncap.train import CaptionData\n",
        "metrics/__init__.py": "from rnncap.metrics import evaluate\n",
        "metrics/evaluate.py": "from rnncap.text import tokenize\nfrom ..data.store import Store\n",
        "decode.py": "",
        "nn/__init__.py": "",
        "gradcheck.py": "",
        "encoders/__init__.py": "",
        "apps/__init__.py": "",
        "cli/__init__.py": "",
    }
    for name, source in modules.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_each_rule_names_the_file_line_and_import_that_break_it(tmp_path: Path) -> None:
    write_bad_package(tmp_path / "src")
    bad = read_package(tmp_path / "src")
    outer = "rnncap.data, rnncap.encoders, rnncap.apps, rnncap.report, rnncap.cli"
    assert engine_imports(bad) == [
        f"src/rnncap/files.py:1: from rnncap.report.gallery import write_gallery (the engine imports none of {outer})",
        f"src/rnncap/models/base.py:5: from rnncap.report import plots (the engine imports none of {outer})",
        "src/rnncap/optim.py:3: import h5py (the engine imports none of torch, torchvision, onnx, onnxruntime, h5py, "
        "PIL, matplotlib)",
    ]
    assert engine_loads(bad) == [
        "import rnncap.files loads rnncap.report:\n"
        "    src/rnncap/files.py:1: from rnncap.report.gallery import write_gallery",
        "import rnncap.optim loads h5py:\n    src/rnncap/optim.py:3: import h5py",
        "import rnncap.train.trainer loads rnncap.data:\n    src/rnncap/train/trainer.py:1: import rnncap.metrics\n"
        "    -> src/rnncap/metrics/__init__.py:1: from rnncap.metrics import evaluate\n"
        "    -> src/rnncap/metrics/evaluate.py:2: from ..data.store import Store",
    ]
    assert module_level_matplotlib(bad) == [
        "src/rnncap/report/plots.py:1: from matplotlib.figure import Figure "
        "(import matplotlib inside the function that draws)"
    ]
    assert trainer_imports(bad) == [
        "src/rnncap/data/store.py:3: from rnncap.train import CaptionData (data and metrics import CaptionData from "
        "rnncap.train.data, never the trainer)"
    ]
    assert metrics_loads_h5py(bad) == [
        "import rnncap.metrics loads h5py:\n    src/rnncap/metrics/__init__.py:1: from rnncap.metrics import evaluate\n"
        "    -> src/rnncap/metrics/evaluate.py:2: from ..data.store import Store\n"
        "    -> src/rnncap/data/store.py:1: import h5py"
    ]


# ---- what real imports load ---------------------------------------------------------------------------------------


def modules_loaded_by(*modules: str) -> set[str]:
    """The top-level names in sys.modules after importing ``modules`` in a fresh interpreter (src/ first on the
    path, so that this checks the tree under test)."""
    code = textwrap.dedent(
        f"""
        import importlib, sys
        for name in {list(modules)!r}:
            importlib.import_module(name)
        print(" ".join(sorted({{name.split(".")[0] for name in sys.modules}})))
        """
    )
    path = [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_import_rnncap_loads_no_heavy_library() -> None:
    assert modules_loaded_by(PACKAGE) & set(HEAVY) == set()


def test_import_rnncap_metrics_loads_no_h5py() -> None:
    assert modules_loaded_by(f"{PACKAGE}.metrics") & {"h5py"} == set()


def test_importing_the_engine_loads_no_heavy_library(package: Package) -> None:
    engine = [module for module in package.files if any(in_layer(module, name) for name in ENGINE)]
    assert modules_loaded_by(*engine) & set(HEAVY) == set()


# ---- the tests themselves ------------------------------------------------------------------------------------------


def test_no_test_module_imports_another() -> None:
    forbidden = {path.stem for path in TESTS.glob("test_*.py")} | {"conftest"}
    problems = []
    for path in sorted(TESTS.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for node, _, _ in _import_nodes(ast.parse(source).body):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(top_name(name) in forbidden for name in names):
                problems.append(f"tests/{path.name}:{node.lineno}: {ast.get_source_segment(source, node)}")
    assert not problems, "shared builders belong in tests/helpers.py, fixtures in conftest.py:\n" + "\n".join(problems)
