"""Which directories an image has and who owns them, read from its Dockerfile without building it.

A small interpreter for the instructions that create directories or change their owner: `WORKDIR`, `USER`,
and in `RUN` the commands `useradd`, `install -d`, `mkdir` and `chown` (split on `&&` and `;`). Everything else
is ignored, so the model knows fewer directories than the image has, never more: a check built on it may
fail on a directory made some other way (say it in the Dockerfile with one of these commands), but never
passes on one that does not exist. Only the final stage counts. Paths from the base image are unknown to it,
except `/` and `/tmp`. File modes (`chmod`, `-m`) are not modelled: the checks ask for ownership.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

ROOT_USER = "root"


@dataclass
class Image:
    """The final stage's user and the directories the Dockerfile made, with their owners."""

    user: str = ROOT_USER
    workdir: PurePosixPath = field(default_factory=lambda: PurePosixPath("/"))
    uids: dict[str, int] = field(default_factory=lambda: {ROOT_USER: 0})
    dirs: dict[PurePosixPath, str] = field(default_factory=dict)  # path -> owning user

    def owner(self, path: PurePosixPath) -> str | None:
        return self.dirs.get(path)

    def nearest(self, path: PurePosixPath) -> tuple[PurePosixPath, str] | None:
        """The path itself or its closest ancestor that the model knows, with its owner."""
        for candidate in (path, *path.parents):
            if candidate in self.dirs:
                return candidate, self.dirs[candidate]
        return None

    def make(self, path: PurePosixPath, owner: str) -> None:
        """mkdir -p: missing parents belong to `owner` too (as the user running the command)."""
        for parent in reversed(path.parents):
            self.dirs.setdefault(parent, owner)
        self.dirs.setdefault(path, owner)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            keyword, _, rest = whole.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def parse(text: str) -> Image:
    image = Image()
    for keyword, args in instructions(text):
        if keyword == "FROM":
            image = Image()  # a new stage: only the last one is the image
            image.make(PurePosixPath("/tmp"), ROOT_USER)
        elif keyword == "WORKDIR":
            path = image.workdir / args  # an absolute argument replaces the current one
            image.make(path, image.user)  # created by the current user when missing (BuildKit: root)
            image.workdir = path
        elif keyword == "USER":
            image.user = args.split(":")[0]
        elif keyword == "RUN":
            _run(image, _strip_run_flags(args))
    return image


def _strip_run_flags(args: str) -> str:
    while args.startswith("--"):
        _, _, args = args.partition(" ")
        args = args.lstrip()
    return args


def _run(image: Image, script: str) -> None:
    for command in re.split(r"&&|;", script):
        try:
            words = shlex.split(command)
        except ValueError:
            continue
        if not words:
            continue
        handler = _COMMANDS.get(words[0])
        if handler is not None:
            handler(image, words[1:])


def _path(image: Image, word: str) -> PurePosixPath:
    return image.workdir / word


def _useradd(image: Image, args: list[str]) -> None:
    uid, home, create_home, i = None, None, False, 0
    name = None
    while i < len(args):
        arg = args[i]
        if arg in ("--uid", "-u"):
            uid, i = int(args[i + 1]), i + 2
            continue
        if arg in ("--home-dir", "-d"):
            home, i = PurePosixPath(args[i + 1]), i + 2
            continue
        if arg in ("--create-home", "-m"):
            create_home = True
        elif arg in ("--shell", "-s", "--gid", "-g", "--groups", "-G", "--comment", "-c"):
            i += 2
            continue
        elif not arg.startswith("-"):
            name = arg
        i += 1
    if name is None:
        return
    image.uids[name] = uid if uid is not None else 1000 + len(image.uids)
    if create_home:
        image.make(home or PurePosixPath("/home") / name, ROOT_USER)
        image.dirs[home or PurePosixPath("/home") / name] = name


def _install(image: Image, args: list[str]) -> None:
    if "-d" not in args and "--directory" not in args:
        return  # installs files, makes no directory of ours
    owner, paths, i = image.user, [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("-o", "--owner"):
            owner, i = args[i + 1], i + 2
            continue
        if arg in ("-g", "--group", "-m", "--mode"):
            i += 2
            continue
        if not arg.startswith("-"):
            paths.append(_path(image, arg))
        i += 1
    for path in paths:
        image.make(path, image.user)
        image.dirs[path] = owner


def _mkdir(image: Image, args: list[str]) -> None:
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-m", "--mode"):
            skip = True
        elif not arg.startswith("-"):
            image.make(_path(image, arg), image.user)


def _chown(image: Image, args: list[str]) -> None:
    recursive = any(a in ("-R", "--recursive") for a in args)
    words = [a for a in args if not a.startswith("-")]
    if len(words) < 2:
        return
    owner = words[0].split(":")[0]
    for word in words[1:]:
        path = _path(image, word)
        if path in image.dirs:
            image.dirs[path] = owner
        if recursive:
            for known in list(image.dirs):
                if path in known.parents:
                    image.dirs[known] = owner


_COMMANDS = {"useradd": _useradd, "install": _install, "mkdir": _mkdir, "chown": _chown}
