"""The Prometheus collector: the gauges and counters ``/metrics`` exposes, computed from each
phase's latest verdict when scraped.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gatecheck._values import observed_number
from gatecheck.durations import format_duration
from gatecheck.results import Outcome, VerdictState
from gatecheck.service.core import Service


class VerdictCollector(Collector):
    """Builds every gauge at scrape time from the service's latest verdicts."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        states = dict(self.service.states)
        verdict_g = GaugeMetricFamily(
            "gatecheck_phase_verdict",
            "Latest verdict of a phase, one-hot over state (go, no-go, inconclusive, rollback).",
            labels=["phase", "environment", "state"],
        )
        outcome_g = GaugeMetricFamily(
            "gatecheck_check_outcome",
            "Latest outcome of a check, one-hot over outcome (pass, fail, inconclusive, error); "
            'waived="true" when a person\'s waiver covers its failure.',
            labels=["phase", "suite", "role", "outcome", "waived"],
        )
        waivers_g = GaugeMetricFamily(
            "gatecheck_waivers_active",
            "Waivers covering a failure in the latest evaluation of a phase.",
            labels=["phase"],
        )
        observed_g = GaugeMetricFamily(
            "gatecheck_check_observed_value",
            "Observed value of an expectation (the worst group) in the latest evaluation.",
            labels=["phase", "suite", "column", "expectation"],
        )
        threshold_g = GaugeMetricFamily(
            "gatecheck_check_threshold",
            "Threshold an expectation is judged by, with its bound (min or max).",
            labels=["phase", "suite", "column", "expectation", "threshold", "bound", "provenance"],
        )
        coverage_g = GaugeMetricFamily(
            "gatecheck_soak_coverage_seconds",
            "Seconds of the soak covered by passing evaluations.",
            labels=["phase"],
        )
        soak_g = GaugeMetricFamily(
            "gatecheck_soak_duration_seconds", "Soak duration the phase requires.", labels=["phase"]
        )
        as_of_g = GaugeMetricFamily(
            "gatecheck_evaluation_timestamp_seconds",
            "as_of of the latest evaluation (Unix time).",
            labels=["phase"],
        )
        duration_g = GaugeMetricFamily(
            "gatecheck_evaluation_duration_seconds", "Wall time of the latest evaluation.", labels=["phase"]
        )
        interval_g = GaugeMetricFamily(
            "gatecheck_evaluation_interval_seconds",
            "How often the service evaluates the phase.",
            labels=["phase"],
        )
        errors_g = GaugeMetricFamily(
            "gatecheck_evaluation_error", "1 if the latest scheduled evaluation raised.", labels=["phase"]
        )
        side_g = GaugeMetricFamily(
            "gatecheck_comparison_side_value",
            "A comparison check's side: each compared value's total over the keys, or its sample "
            "count (n) and summary (p50, p95, hits, total, rate).",
            labels=["phase", "suite", "side", "source", "value"],
        )
        up_g = GaugeMetricFamily(
            "gatecheck_source_up", "1 if the source answered in the latest evaluation using it.",
            labels=["environment", "source"],
        )  # fmt: skip
        budget_g = GaugeMetricFamily(
            "gatecheck_slo_budget_remaining",
            "Share of an SLO's error budget left over its window at the latest evaluation (negative: "
            "overspent; absent: too few events to say).",
            labels=["phase", "slo"],
        )
        burn_g = GaugeMetricFamily(
            "gatecheck_slo_burn_rate",
            "How fast an SLO's error budget burns in one window of a burn-rate rule (1: it would last "
            "exactly the SLO's window).",
            labels=["phase", "slo", "rule", "window"],
        )
        firing_g = GaugeMetricFamily(
            "gatecheck_slo_rule_firing",
            "1 if the burn-rate rule fires (both of its windows above its factor), 0 if not; absent "
            "when a window has too few events.",
            labels=["phase", "slo", "rule"],
        )
        for phase, state in sorted(states.items()):
            errors_g.add_metric([phase], 1.0 if state.last_error else 0.0)
            interval_g.add_metric([phase], self.service.interval(phase).total_seconds())
            verdict = state.verdict
            if verdict is None:
                continue
            for choice in VerdictState:
                verdict_g.add_metric(
                    [phase, verdict.environment, choice.value], float(choice is verdict.verdict)
                )
            as_of_g.add_metric([phase], verdict.as_of.timestamp())
            if state.duration_s is not None:
                duration_g.add_metric([phase], state.duration_s)
            if verdict.soak is not None:
                coverage_g.add_metric([phase], verdict.soak.coverage.total_seconds())
                soak_g.add_metric([phase], verdict.soak.duration.total_seconds())
            waivers_g.add_metric([phase], float(len({c.waiver.id for c in verdict.checks if c.waiver})))
            for check in verdict.checks:
                waived = "true" if check.waiver is not None else "false"
                for outcome in Outcome:
                    labels = [phase, check.suite, check.role, outcome.value, waived]
                    outcome_g.add_metric(labels, float(outcome is check.outcome))
                if check.slo is not None:
                    found = check.slo
                    if found.budget_remaining is not None:
                        budget_g.add_metric([phase, check.suite], found.budget_remaining)
                    for rule in found.rules:
                        for span in (rule.long, rule.short):
                            if span.burn is not None:
                                window = format_duration(span.length)
                                burn_g.add_metric([phase, check.suite, rule.rule, window], span.burn)
                        if rule.firing is not None:
                            firing_g.add_metric([phase, check.suite, rule.rule], float(rule.firing))
                for side in check.sides:
                    for name, number in side.values.items():
                        if number is not None:
                            side_g.add_metric([phase, check.suite, side.side, side.source, name], number)
                for expectation in check.expectations:
                    column = expectation.column or ""
                    observed = observed_number(expectation.observed_value)
                    if observed is not None:
                        observed_g.add_metric([phase, check.suite, column, expectation.type], observed)
                    for threshold in expectation.thresholds:
                        value = observed_number(threshold.value)
                        if value is not None and threshold.bound is not None:
                            threshold_g.add_metric(
                                [phase, check.suite, column, expectation.type, threshold.name,
                                 threshold.bound, threshold.provenance],
                                value,
                            )  # fmt: skip
        for (environment, source), up in sorted(self.service.source_up.items()):
            up_g.add_metric([environment, source], 1.0 if up else 0.0)
        notifications = CounterMetricFamily(
            "gatecheck_notifications",
            "Notifications of a verdict change, by target and result (sent, failed, suppressed, dropped).",
            labels=["target", "result"],
        )
        notifier = self.service.notifier
        if notifier is not None:
            for target in notifier.targets:
                for result in ("sent", "failed", "suppressed", "dropped"):
                    notifications.add_metric(
                        [target.name, result], float(notifier.counts[(target.name, result)])
                    )
        leader_g = GaugeMetricFamily(
            "gatecheck_leader",
            "1 if this replica schedules the evaluations (it holds the scheduler lease of a shared "
            "PostgreSQL ledger; a service without replicas always does), else 0.",
        )
        leader_g.add_metric([], 1.0 if self.service.scheduling else 0.0)
        yield from (
            leader_g,
            verdict_g,
            outcome_g,
            observed_g,
            threshold_g,
            side_g,
            budget_g,
            burn_g,
            firing_g,
            coverage_g,
            soak_g,
            as_of_g,
            duration_g,
            errors_g,
            up_g,
            waivers_g,
            notifications,
        )


# --------------------------------------------------------------------------- HTTP
