"""``gatecheck check-sources`` as text: one line per source, then one line per problem."""

from __future__ import annotations

from gatecheck.evaluation.sourcecheck import SourceCheck


def render_checks(checks: list[SourceCheck]) -> str:
    """One line per source, then one line per problem."""
    lines = []
    width = max((len(f"{c.environment}/{c.name}") for c in checks), default=0)
    for check in checks:
        probe = check.probe
        label = f"{check.environment}/{check.name}".ljust(width)
        if not probe.reachable:
            lines.append(f"unreachable  {label}  {check.type} {check.url}")
        else:
            latency = f"{probe.latency_ms:.0f} ms" if probe.latency_ms is not None else "-"
            state = "ok" if check.ok else "problem"
            lines.append(
                f"{state:<11}  {label}  {probe.version or check.type} at {check.url}, {latency}"
                + (f"; checked {probe.checked}" if probe.checked else "")
            )
    for check in checks:
        lines += [f"problem: {check.environment}/{check.name}: {p}" for p in check.probe.problems]
    return "\n".join(lines) + "\n"
