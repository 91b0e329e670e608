"""Every path an engine service writes exists in the image and belongs to the image's user.

The image runs as an unprivileged user (uid 10001). A named volume mounted on a directory the image has
starts as a copy of that directory, owner included; mounted where the image has nothing, Docker creates the
directory as root, and the service cannot write its own volume (the venue could not open its ledger, never
became healthy, and the router waiting for it never started). So: each engine service's volume targets must
be directories the Dockerfile creates and gives to its user, and every other path its configuration tells
it to write must lie in a directory that user owns.

What this proves without an engine: what the Dockerfile says (tests/dockerfile_model.py reads the final
stage's WORKDIR, USER, useradd, install -d, mkdir and chown), against what compose.yaml mounts and configures.
What it cannot prove: that Docker copies the ownership (it does for a named volume that is empty when first
mounted, not for a bind mount, and not for a volume an older image already populated: docs/deploy.md gives
the one-off chown); that the code writes nowhere else than the paths named in WRITTEN_PATHS below; what a
RUN script does beyond the commands the model reads, or what the base image holds; file modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import pytest

from services import config
from tests import dockerfile_model
from tests.compose_file import DOCKERFILE, engine_services, env, is_named_volume, load, volume_mounts

IMAGE_UID = 10001


def written_paths(environment: Mapping[str, str], workdir: PurePosixPath) -> dict[str, PurePosixPath]:
    """What an engine process writes, from its configuration: why -> the directory it writes in."""
    out = {}
    ledger = environment.get("VENUE_LEDGER_PATH")
    if ledger:  # the venue's journals: <stem>-<venue><suffix> beside it (services/venue/config.py)
        out["VENUE_LEDGER_PATH's directory"] = PurePosixPath(ledger).parent
    # OEE_STATE_DIR, default <repo>/.stack: the router's Faust data directory (services/router/app.py);
    # the image installs the project editable in its WORKDIR, which is then the repo root.
    state = environment.get("OEE_STATE_DIR") or config.ENV_VARS["OEE_STATE_DIR"][0]
    out["OEE_STATE_DIR"] = PurePosixPath(state) if state else workdir / ".stack"
    return out


def problems(image: dockerfile_model.Image, services: Mapping[str, Any]) -> list[str]:
    """Everything wrong with the engine services' writable paths in `image`, as sentences."""
    found = []
    user = image.user
    if image.uids.get(user) != IMAGE_UID:
        found.append(f"the image runs as {user!r} (uid {image.uids.get(user)}), not uid {IMAGE_UID}")
    for name in engine_services(services):
        svc = services[name]
        if svc.get("user") not in (None, user, str(image.uids.get(user))):
            found.append(f"service {name} runs as user {svc['user']!r}, not the image's {user}")
        mounts = volume_mounts(svc)
        for source, target, read_only in mounts:
            path = PurePosixPath(target)
            if not is_named_volume(source):
                found.append(
                    f"service {name} mounts {source or 'an anonymous volume'} on {target}: not a named volume"
                )
            owner = image.owner(path)
            if owner is None:
                found.append(
                    f"service {name} mounts volume {source} on {target}, which the image does not create: "
                    "Docker would create it owned by root"
                )
            elif owner != user and not read_only:
                found.append(
                    f"service {name} writes volume {source} on {target}, owned by {owner}, not {user}"
                )
        for long_form in svc.get("volumes") or []:
            if isinstance(long_form, dict) and (long_form.get("volume") or {}).get("nocopy"):
                found.append(
                    f"service {name} mounts {long_form['target']} with nocopy: the ownership is not copied"
                )
        volumes = [PurePosixPath(t) for s, t, ro in mounts if not ro]
        for why, directory in written_paths(env(services, name), image.workdir).items():
            known = image.nearest(directory)
            if known is None or known[1] != user:
                where = f"{known[0]} owned by {known[1]}" if known else "nothing the image creates"
                found.append(
                    f"service {name} writes {directory} ({why}), in {where}, not in a directory of {user}"
                )
            if why.startswith("VENUE_LEDGER_PATH") and not any(
                v == directory or v in directory.parents for v in volumes
            ):
                found.append(
                    f"service {name} keeps its ledger in {directory}, on no volume: lost with the container"
                )
    return found


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load()["services"]


def test_the_image_owns_every_path_the_services_write(services: dict[str, Any]) -> None:
    image = dockerfile_model.parse(DOCKERFILE.read_text())
    found = problems(image, services)
    assert not found, "the engine image cannot write what compose.yaml asks it to:\n" + "\n".join(found)


def test_the_venue_ledger_is_checked(services: dict[str, Any]) -> None:
    """The check looks where the bug was: the venue's ledger directory is a volume the image's user owns."""
    image = dockerfile_model.parse(DOCKERFILE.read_text())
    ledger = PurePosixPath(env(services, "venue")["VENUE_LEDGER_PATH"])
    assert image.owner(ledger.parent) == image.user != dockerfile_model.ROOT_USER
    assert str(ledger.parent) in {t for _, t, _ in volume_mounts(services["venue"])}


# The Dockerfile's user lines before the fix (compose.yaml mounted venue-data on /app/venue-data).
BEFORE_THE_FIX = """
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN useradd --create-home --uid 10001 oee && chown oee:oee /app
USER oee
"""


def test_the_check_catches_the_root_owned_ledger_volume(services: dict[str, Any]) -> None:
    found = problems(dockerfile_model.parse(BEFORE_THE_FIX), services)
    assert found == [
        "service venue mounts volume venue-data on /app/venue-data, which the image does not create: "
        "Docker would create it owned by root"
    ], found


@pytest.mark.parametrize(
    ("dockerfile", "why"),
    [
        (BEFORE_THE_FIX + "RUN mkdir -p /app/venue-data\n", "created by oee itself: fine"),
        (BEFORE_THE_FIX.replace("USER oee", "RUN mkdir /app/venue-data\nUSER oee"), "created by root"),
        (
            BEFORE_THE_FIX.replace("chown oee:oee /app", "install -d -o oee /app/venue-data"),
            "/app left to root",
        ),
        (
            BEFORE_THE_FIX.replace("--uid 10001", "--uid 1000") + "RUN mkdir -p /app/venue-data\n",
            "another uid",
        ),
    ],
    ids=["mkdir-as-user", "mkdir-as-root", "app-root-owned", "wrong-uid"],
)
def test_the_model_follows_who_creates_what(services: dict[str, Any], dockerfile: str, why: str) -> None:
    found = problems(dockerfile_model.parse(dockerfile), services)
    assert bool(found) == (why != "created by oee itself: fine"), (why, found)
    if why == "/app left to root":  # the volume is fine now; the state directory is not
        assert found and all("OEE_STATE_DIR" in line for line in found), found


def test_the_model_reads_continuations_flags_and_stages() -> None:
    image = dockerfile_model.parse(
        "FROM golang AS build\nRUN mkdir /elsewhere\n"
        "FROM python:3.11-slim\nWORKDIR /srv\n"
        "RUN --mount=type=cache,target=/root/.cache \\\n"
        "    useradd -m -u 4242 app \\\n"
        "    # a comment inside the instruction\n"
        " && install -d -o app -g app data logs/deep ; chown -R app:app /srv/logs\n"
        "USER app\n"
    )
    assert image.user == "app" and image.uids["app"] == 4242
    assert PurePosixPath("/elsewhere") not in image.dirs, "an earlier stage leaked into the image"
    assert image.owner(PurePosixPath("/srv/data")) == "app"
    assert image.owner(PurePosixPath("/srv/logs/deep")) == "app"
    assert image.owner(PurePosixPath("/srv/logs")) == "app"  # made by install as root, then chown -R
    assert image.owner(PurePosixPath("/srv")) == "root"
    assert image.owner(PurePosixPath("/home/app")) == "app"
    assert image.nearest(PurePosixPath("/srv/data/x/y")) == (PurePosixPath("/srv/data"), "app")
