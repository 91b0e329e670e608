"""`mypy --strict` holds where pyproject.toml says it does: the event contract and the pure cores.

The list of strict modules lives in one place, the `[[tool.mypy.overrides]]` of pyproject.toml that sets
--strict's per-module flags (so plain `mypy`, and `oee check`, enforce them); this test reads that list and
runs `mypy --strict` on exactly those modules, so the two cannot drift apart.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from typing import Any

from services.config import REPO_ROOT

# --strict's flags that can be set per module (warn_unused_configs and warn_redundant_casts are global only).
STRICT_PER_MODULE = {
    "disallow_any_generics": True,
    "disallow_subclassing_any": True,
    "disallow_untyped_calls": True,
    "disallow_untyped_defs": True,
    "disallow_incomplete_defs": True,
    "disallow_untyped_decorators": True,
    "warn_unused_ignores": True,
    "warn_return_any": True,
    "implicit_reexport": False,
    "strict_equality": True,
    "extra_checks": True,
}
NAMED_BY_THE_ISSUE = {
    "events.*", "services.router.flow", "services.router.routing", "services.lag.rules",
    "services.gateway.frames", "projections.fold", "services.gateway.sequencer",
}  # fmt: skip


def strict_override() -> dict[str, Any]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    overrides = config["tool"]["mypy"].get("overrides", [])
    found = [o for o in overrides if o.get("disallow_untyped_defs")]
    assert len(found) == 1, "one override holds the strict modules"
    return found[0]  # type: ignore[no-any-return]


def test_the_strict_override_sets_every_per_module_strict_flag_and_names_the_issues_modules() -> None:
    override = strict_override()
    assert {k: override.get(k) for k in STRICT_PER_MODULE} == STRICT_PER_MODULE
    assert "strict" not in override, "strict = true in an override turns strict mode on for every module"
    assert set(override["module"]) >= NAMED_BY_THE_ISSUE


def test_mypy_strict_is_clean_on_the_strict_modules() -> None:
    args: list[str] = []
    for module in strict_override()["module"]:
        args += ["-p", module.removesuffix(".*")] if module.endswith(".*") else ["-m", module]
    # Imported modules outside the list are read for their types but not judged (--follow-imports=silent).
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
