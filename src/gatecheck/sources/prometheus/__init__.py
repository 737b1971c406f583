"""The Prometheus source kind: one configuration (``type: prometheus``), two sources —
a server's HTTP API (``http(s)://``, :mod:`.api`) and one service's exposition read directly
(``scrape+http(s)://``, :mod:`.scrape`) — and what they share (:mod:`.promql`). This module
chooses between the two for the registry; neither imports the other.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from gatecheck._values import document_time
from gatecheck.errors import redact
from gatecheck.sources.base import QueryParameters
from gatecheck.sources.probe import Probe
from gatecheck.sources.prometheus.promql import (
    SCRAPED,
    PrometheusSourceConfig,
    PromQuery,
    counted_from_zero,
    reads_from,
    render_promql,
)


def scrape_query_problems(config: PrometheusSourceConfig, query: Any) -> list[tuple[str, str, str]]:
    """(key, what the source is, problem) for a suite query that this source's configuration
    cannot answer: on a scrape source, every measure must be answerable from one snapshot."""
    if not config.scrape:
        return []
    from gatecheck.sources.prometheus.scrape import scrape_problems

    measures = query.measures if isinstance(query, PromQuery) else {"value": query}
    found: list[tuple[str, str, str]] = []
    for measure, promql in measures.items():
        if isinstance(promql, str):
            where = f"query.measures.{measure}" if isinstance(query, PromQuery) else "query"
            found.extend((where, "a scrape source", p) for p in scrape_problems(promql))
    return found


def explain_query(
    name: str, config: PrometheusSourceConfig, query: Any, parameters: QueryParameters, root: Path
) -> dict[str, Any]:
    """The instant queries the source sends for ``query`` (``gatecheck explain``)."""
    measures = query.measures if isinstance(query, PromQuery) else {"value": query}
    end = parameters["window_end"]
    assert isinstance(end, datetime)
    at = {"name": "time", "type": "", "sent": f"{end.timestamp():.3f}", "means": document_time(end)}
    if config.scrape:
        sent_to = f"one scrape of {redact(config.url)}, each measure evaluated on that snapshot"
    else:
        sent_to = f"Prometheus at {redact(config.url)}: GET /api/v1/query (instant queries)"
    # as sent: a server counts a counter created inside a range from its zero (the scrape
    # source does so from _created, on the text as written)
    sent = (lambda text: text) if config.scrape else counted_from_zero
    requests = [
        {"what": f"measure {measure}", "text": sent(render_promql(promql, parameters)), "parameters": [at]}
        for measure, promql in measures.items()
    ]
    from gatecheck.sources.prometheus.api import fallback_labels, fallback_metrics

    asked = sorted({metric for promql in measures.values() for metric in fallback_metrics(promql)})
    start = parameters["window_start"]
    assert isinstance(start, datetime)
    span = f"start={start.timestamp() - 300:.3f}&end={end.timestamp():.3f}"
    if asked and not config.scrape:
        requests.append({
            "what": "metrics an `or` may read as absent: each declared by a target or stored in the window, "
            "and no target declaring it that the expression reads down",
            "text": "; ".join(
                f"GET /api/v1/metadata?metric={metric} (and its family), "
                f"else /api/v1/series?match[]={metric}&{span}; "
                f"if a target was down at time={end.timestamp():.3f} (up == 0, asked once), "
                f"GET /api/v1/targets/metadata?metric={metric} (and its family): a target declaring it "
                "that the expression may read was down is an error; "
                f"count by (job) (last_over_time({metric}[…])) and on(job) "
                "count by (job) (last_over_time(up[…])) at the end, and if a job reported it, "
                "GET /api/v1/targets?state=active: a job that reported it with no target active now "
                "is an error"
                for metric in asked
            ),
            "parameters": [],
        })  # fmt: skip
    labelled = sorted({m for promql in measures.values() for m, _, _ in fallback_labels(promql)})
    if labelled and not config.scrape:
        requests.append({
            "what": "labels an `or`'s matchers need: carried by the metric's series in the window",
            "text": "; ".join(f"GET /api/v1/labels?match[]={metric}&{span}" for metric in labelled),
            "parameters": [],
        })  # fmt: skip
    earliest = reads_from(start, end, [render_promql(promql, parameters) for promql in measures.values()])
    if earliest is not None and not config.scrape:
        requests.append({
            "what": "that the server was scraping where the ranges begin (no target's up then, "
            "while one's is at the end, is an error)",
            "text": f"GET /api/v1/query?query={SCRAPED}&time={earliest.timestamp():.3f} "
            f"({document_time(earliest)}), and if empty &time={end.timestamp():.3f}",
            "parameters": [],
        })  # fmt: skip
    if not config.scrape:
        requests.append({
            "what": "the server's retention, once per evaluation (a window begun before it is an error)",
            "text": "GET /api/v1/status/runtimeinfo (storageRetention; its Date header: the server's clock)",
            "parameters": [],
        })  # fmt: skip
    return {"sent_to": sent_to, "requests": requests}


async def check_source(name: str, config: PrometheusSourceConfig, root: Path, suites: list[Any]) -> Probe:
    """Reach the server (its build info: version; each metric the suites name has a series)
    or, for a scrape source, the exposition."""
    if config.scrape:
        from gatecheck.sources.prometheus.scrape import check_scrape

        return await check_scrape(name, config, root)
    from gatecheck.sources.prometheus.api import check_server

    return await check_server(name, config, root, suites)
