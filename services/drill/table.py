"""The drill's verdict as the table `oee drill` prints (and docs/drill.md quotes). Pure."""

from __future__ import annotations

from services.drill.plan import DESCRIPTIONS
from services.drill.verdict import Verdict

EXAMPLES = 5  # problem lines shown per failing row (all of them go to the JSON report)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def render(verdict: Verdict, heading: str) -> str:
    v = verdict
    answers = ", ".join(f"{k} x{n}" for k, n in sorted(v.answers.items(), key=lambda kv: -kv[1]))
    lines = [
        heading,
        "",
        f"{'orders acknowledged (201)':<40} {v.acknowledged:>7}",
        f"{'  client answers':<40} {answers or '-'}",
        f"{'  clients that gave up (no answer in time)':<40} {v.gave_up:>7}",
        f"{'  orders in the log':<40} {v.logged_orders:>7}"
        f"   ({v.unacknowledged_in_log} never acknowledged: their client saw a 503 or timeout)",
        f"{'faults injected':<40} {sum(r.injected for r in v.recovery.values()):>7}"
        f"   {'longest recovery: first order':>30}   {'every partition':>15}",
    ]
    for kind, r in v.recovery.items():
        unmeasured = f"  ({r.unmeasured} unmeasured)" if r.unmeasured else ""
        lines.append(
            f"{'  ' + kind:<40} {r.injected:>7}   {_s(r.longest_first_s):>30}   {_s(r.longest_all_s):>15}"
            f"{unmeasured}"
        )
    counts = {
        "valid orders refused (4xx)": (v.refused, ""),
        "lost (201 without terminal event)": (v.lost, ""),
        "duplicated (2 lifecycles / executions)": (v.duplicated, ""),
        "log broken (gap, illegal step)": (v.broken, ""),
        "executions != confirmations": (
            v.executions,
            f"({v.executed} executed by the venues; {v.confirmed} confirmed, {v.failed} failed in the log)",
        ),
        "projection != fold of the log": (v.projection, f"({v.logged_orders} orders compared row by row)"),
        "WebSocket gaps (streams)": (v.gaps, f"({v.streams} streams compared frame by frame)"),
        "faults not injected": (v.not_injected, ""),
        "faults not recovered": (v.unrecovered, ""),
    }
    for label, (problems, note) in counts.items():
        lines.append(f"{label:<40} {len(problems):>7}   {note}".rstrip())
    lines.append("")
    lines.append(f"verdict: {'PASS: nothing lost, doubled or wrong' if v.ok else 'FAIL'}")
    for label, problems in v.failures().items():
        for problem in problems[:EXAMPLES]:
            lines.append(f"  {label}: {problem}")
        if len(problems) > EXAMPLES:
            lines.append(f"  {label}: ... and {len(problems) - EXAMPLES} more (see the JSON report)")
    return "\n".join(lines)


def legend() -> str:
    """What each fault kind does, for the report's head."""
    return "\n".join(f"  {kind:<20} {text}" for kind, text in DESCRIPTIONS.items())
