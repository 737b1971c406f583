"""``gatecheck explain`` as text: one block per check — the request exactly as sent with its
bound parameters, the window and where it came from, the evidence rule, each expectation
with its threshold's provenance, and, with ``--estimate``, what the source's planner expects
to read."""

from __future__ import annotations

from typing import Any


def render_explanation(document: dict[str, Any]) -> str:
    """The explanation as text, one block per check."""
    lines = [
        f"{document['phase']} [{document['environment']}] as of {document['as_of']}: what a run would "
        "send and judge (nothing was sent)"
    ]
    if document["requires"]:
        lines.append(f"requires   a recorded GO of {', '.join(document['requires'])} (from the ledger)")
    if document["soak"]:
        soak = document["soak"]
        lines.append(
            f"soak       {soak['duration']} of passing evaluations, gaps ≤ {soak['max_gap']} (ledger)"
        )
    if document.get("deadline"):
        deadline = document["deadline"]
        lines.append(
            f"deadline   inconclusive for {deadline['inconclusive_for']}, then {deadline['then']} (ledger)"
        )
    pad = " " * 11
    for check in document["checks"]:
        window, query, source = check["window"], check["query"], check["source"]
        lines += [
            "",
            f"{check['suite']} — {check['role']} check on {source['name']} ({source['type']})",
        ]
        if check["description"]:
            lines.append(f"{pad}{check['description']}")
        lines += [
            f"window     {window['start']} → {window['end']}",
            f"{pad}length {window['length']:<6} from {window['length_from']}",
            f"{pad}settle {window['settle']:<6} from {window['settle_from']}",
            f"sent to    {query['sent_to']}",
        ]
        for request in query["requests"]:
            lines.append(f"{request['what']}:")
            lines += [f"{pad}{line}" for line in request["text"].splitlines()]
            for parameter in request.get("parameters", []):
                means = f"  = {parameter['means']}" if "means" in parameter else ""
                origin = f"  ({parameter['provenance']}: {parameter['key']})" if "key" in parameter else ""
                kind = f" {parameter['type']}" if parameter["type"] else ""
                lines.append(f"{pad}with {parameter['name']}{kind} = {parameter['sent']}{means}{origin}")
        for estimate in check.get("estimate", []):
            lines += [f"estimate   {line}" for line in _estimate_lines(estimate)]
        if check.get("compare"):
            lines.append(f"compare    {check['compare']}")
        if check.get("reconcile"):
            lines.append(f"reconcile  {check['reconcile']}")
        evidences = check.get("evidence_per_side") or ([check["evidence"]] if check["evidence"] else [])
        if not evidences:
            lines.append("evidence   no minimum: an empty result is inconclusive, any row is judged")
        for evidence in evidences:
            lines.append(
                f"evidence   sum({evidence['column']}) ≥ {_value_text(evidence['min_total'])}; "
                "less is inconclusive"
            )
        for expectation in check["expectations"]:
            lines.append(f"expect     {expectation['type']}")
            for name, value in expectation.items():
                if name != "type":
                    lines.append(f"{pad}  {name} = {_value_text(value)}")
        if check["groups"]:
            lines.append(f"groups     {', '.join(check['groups'])}")
        for text in check.get("over_time") or []:
            lines.append(f"over time  {text} (ledger)")
    return "\n".join(lines) + "\n"


def _estimate_lines(estimate: dict[str, Any]) -> list[str]:
    """One line per table of an estimate, as ``explain`` prints it."""
    if "error" in estimate:
        return [f"no estimate: {estimate['error']}"]
    if "none" in estimate:
        return [estimate["none"]]
    lines = []
    for table in estimate.get("tables", []):
        used = [
            (
                f"{i['index']} selects "
                if i["index"] == "PrimaryKeyExpand"
                else f"{i['index']} ({', '.join(i['keys']) or 'no condition on its keys'}) selects "
            )
            + f"{i['granules']}/{i['of']} granules"
            for i in estimate.get("indexes", [])
            if i["table"] == table["table"]
        ]
        lines.append(
            f"{table['table']}: {table['rows']:,} rows, {table['parts']} parts, {table['marks']} marks"
            + (f"; {'; '.join(used)}" if used else "; no index prunes it")
        )
    for scan in estimate.get("scans", []):
        how = f"{scan['scan']}" + (f" on {scan['index']}" if scan.get("index") else "")
        lines.append(f"{scan['table']}: {how}, ~{scan['rows']:,} rows")
    return lines


def _value_text(entry: Any) -> str:
    if isinstance(entry, dict) and "provenance" in entry:
        name = f"{entry['threshold']}, " if "threshold" in entry else ""
        return f"{entry['value']!r}  ({name}{entry['provenance']}: {entry['key']})"
    return repr(entry)
