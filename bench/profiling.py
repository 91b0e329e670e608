"""Sampling profiles of running services with py-spy, and a plain-text summary of its folded stacks.

    uv run --with py-spy python -m bench.bench_pipeline http --profile router,api,venue
    uv run python -m bench.profiling bench/results/run-*/profiles/router-i1.folded [--top 25]

py-spy samples the process from outside (100 Hz; it pauses the target for each sample, so stacks are whole),
and the service runs unmodified. The summary gives, per function (file:function, line numbers dropped), its share
of the samples on the stack (inclusive) and at the top of the stack (self); py-spy leaves idle samples out.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass
class Profiler:
    """One `py-spy record` subprocess writing folded stacks to `out`."""

    name: str
    out: Path
    proc: asyncio.subprocess.Process

    async def stop(self) -> Path:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        await self.proc.wait()
        return self.out


def available() -> bool:
    return shutil.which("py-spy") is not None


async def start(name: str, pid: int, out: Path, rate: int = 100) -> Profiler:
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = ["py-spy", "record", "--pid", str(pid), "--rate", str(rate)]
    argv += ["--format", "raw", "--output", str(out)]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return Profiler(name, out, proc)


def frame_name(frame: str) -> str:
    """'handle (services/router/core.py:181)' -> 'services/router/core.py:handle'."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{match['func']}"


@dataclass(frozen=True)
class Summary:
    busy_samples: int
    inclusive: list[tuple[str, float]]  # (function, % of busy samples with it on the stack)
    own: list[tuple[str, float]]  # (function, % of busy samples with it on top)


TRUNK = (
    "<frozen runpy>", "services/cli.py:", "asyncio/runners.py:", "asyncio/base_events.py:BaseEventLoop.run_",
    "asyncio/base_events.py:BaseEventLoop._run_once", "asyncio/events.py:Handle._run", "uvicorn/server.py:",
    "uvicorn/_compat.py:", "uvicorn/main.py:", "mode/worker.py:", "services/router/app.py:run",
    "services/api/server.py:run", "services/venue/server.py:main",
)  # fmt: skip
"""Frames every sample of a service passes through (main, the event loop): left out of the inclusive list."""


def summarize(folded: Path, top: int = 25) -> Summary:
    """Per-function shares of the busy samples (inclusive: on the stack; own: on top of it)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame_name(f) for f in stack.split(";")]
        if not frames:
            continue
        n = int(count)
        total += n
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    if not total:
        return Summary(0, [], [])
    pct = 100 / total
    branches = [(f, c * pct) for f, c in inclusive.most_common() if not f.startswith(TRUNK)][:top]
    return Summary(total, branches, [(f, c * pct) for f, c in own.most_common(top)])


def render(folded: Path, top: int = 25) -> str:
    s = summarize(folded, top)
    lines = [f"{folded.name}: {s.busy_samples} busy samples (100 Hz)", ""]
    lines += ["| on stack % | function |", "|---:|---|"]
    lines += [f"| {p:.1f} | `{f}` |" for f, p in s.inclusive]
    lines += ["", "| on top (self) % | function |", "|---:|---|"]
    lines += [f"| {p:.1f} | `{f}` |" for f, p in s.own]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="summarize py-spy folded stacks")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.files:
        print(render(path, args.top))
        print()


if __name__ == "__main__":
    main()
