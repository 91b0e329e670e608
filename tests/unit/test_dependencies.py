"""The runtime dependencies hold what runs, and only that; tests and benchmarks bring their own.

`uv sync --no-dev` (the Docker image) installs `[project].dependencies` and what they need, nothing of the
dev group. A runtime module that imports a package declared only for dev works on a developer's machine and
fails in the image, so every third-party import under `events/`, `services/` and `projections/` (at any
depth: imports inside functions count) must be a declared runtime dependency. The reverse holds too: a
runtime dependency nothing imports is either used another way (said below, with why) or does not belong.
Pure: reads pyproject.toml, uv.lock and the sources' syntax trees; imports nothing it checks.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ("events", "services", "projections")
# Runtime dependencies that no module imports by name, and why they are runtime all the same.
USED_WITHOUT_IMPORT = {
    "websockets": "uvicorn's WebSocket protocol: services/api/server.py runs it with ws='websockets-sansio'",
    "sniffio": "httpcore imports it on every request when present (services/lag/terminal.py's httpx client); "
    "absent, it retries the import each time (services/venue/client.py measured that)",
    "swagger-ui-py": "its static files (package swagger_ui) are found with importlib.util.find_spec and served "
    "by services/spec/part.py; nothing imports the package's Python code",
}


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0])


@cache
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def runtime_dependencies() -> set[str]:
    return {requirement_name(r) for r in pyproject()["project"]["dependencies"]}


def dev_dependencies() -> set[str]:
    return {requirement_name(r) for r in pyproject()["dependency-groups"]["dev"] if isinstance(r, str)}


def imported_modules(paths: list[Path], root: Path = ROOT) -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (absolute imports only: relative ones are ours)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(root)))
    return found


def runtime_sources() -> list[Path]:
    return sorted(p for pkg in RUNTIME_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def third_party(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    ours = set(RUNTIME_PACKAGES)
    return {m: files for m, files in modules.items() if m not in sys.stdlib_module_names and m not in ours}


def distributions_of(module: str) -> set[str]:
    """The installed distributions providing a top-level module (the dev environment has them all)."""
    return {normalize(d) for d in packages_distributions().get(module, [])}


def test_every_runtime_import_is_a_runtime_dependency() -> None:
    runtime, dev = runtime_dependencies(), dev_dependencies()
    problems = []
    for module, files in sorted(third_party(imported_modules(runtime_sources())).items()):
        dists = distributions_of(module)
        where = ", ".join(sorted(files)[:3])
        if not dists:
            problems.append(f"{module} (imported by {where}) is not installed at all")
        elif not dists & runtime:
            kind = "a dev-only dependency" if dists & dev else "not a declared dependency"
            problems.append(f"{module} ({'/'.join(sorted(dists))}, imported by {where}) is {kind}")
    assert not problems, "runtime modules import what `uv sync --no-dev` may not install:\n" + "\n".join(
        problems
    )


def test_every_runtime_dependency_runs() -> None:
    imported = set()
    for module in third_party(imported_modules(runtime_sources())):
        imported |= distributions_of(module)
    unused = runtime_dependencies() - imported - set(USED_WITHOUT_IMPORT)
    assert not unused, (
        f"runtime dependencies {sorted(unused)} are imported by no module of {RUNTIME_PACKAGES}: "
        "move them to the dev group (tests, benchmarks) or say in USED_WITHOUT_IMPORT how they run"
    )


def test_a_package_is_runtime_or_dev_not_both() -> None:
    both = runtime_dependencies() & dev_dependencies()
    assert not both, f"{sorted(both)} are both runtime and dev dependencies"


def test_the_lock_matches_pyproject() -> None:
    """`uv sync --frozen` (./oee, the Dockerfile) trusts uv.lock without resolving: a dependency moved in
    pyproject.toml without `uv lock` would silently install the old set."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    name = normalize(pyproject()["project"]["name"])
    (project,) = [p for p in lock["package"] if normalize(p["name"]) == name]
    locked_runtime = {normalize(r["name"]) for r in project["metadata"]["requires-dist"]}
    locked_dev = {normalize(r["name"]) for r in project["metadata"]["requires-dev"]["dev"]}
    assert locked_runtime == runtime_dependencies(), "uv.lock's runtime dependencies differ: run `uv lock`"
    assert locked_dev == dev_dependencies(), "uv.lock's dev dependencies differ: run `uv lock`"


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    """The failure it exists for: a dev-only package imported inside a function of a runtime module."""
    module = tmp_path / "late.py"
    module.write_text(
        "def f():\n    import yaml\n    from psutil import Process\n    from . import sibling\n"
    )
    found = third_party(imported_modules([module], tmp_path))
    assert found == {"yaml": {"late.py"}, "psutil": {"late.py"}}
    for name in found:
        dists = distributions_of(name)
        assert dists and dists <= dev_dependencies() and not dists & runtime_dependencies(), (
            f"{name} should be dev-only (tests and benchmarks use it, nothing at runtime)"
        )
