"""Prometheus metrics (DESIGN §12), read the way Prometheus reads them.

Engine events are fed to :class:`Metrics` and the assertions are made on the text exposition
(``generate_latest``), parsed back into samples: names, labels, values, help texts and types
are what dashboards and alert rules depend on. Per-CronWorkflow gauges come from a small
:class:`FleetView` fake, as the runtime provides them at scrape time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from policies.decision import ErrorReason, MissedReason, SkipReason, WorkflowPhase
from policies.schedule import Schedule
from scheduler.core.engine import Completed, Error, Event, Missed, Skipped, Spawned, Stopped
from scheduler.telemetry.metrics import CronWorkflowGauges, Metrics, expected_interval

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
DAY = 86_400.0

Labels = tuple[tuple[str, str], ...]


@dataclass
class FakeFleet:
    """What the runtime shows at scrape time."""

    cron_workflows: list[CronWorkflowGauges] = field(default_factory=list)
    leader: bool = True
    errors: dict[str, int] = field(default_factory=dict)

    def gauges(self) -> list[CronWorkflowGauges]:
        return list(self.cron_workflows)

    def is_leader(self) -> bool:
        return self.leader

    def manifest_errors(self) -> dict[str, int]:
        return dict(self.errors)


def gauges(
    key: str,
    state: str = "active",
    next_time: float | None = None,
    last_time: float | None = None,
    interval: float | None = None,
) -> CronWorkflowGauges:
    namespace, _, name = key.partition("/")
    return CronWorkflowGauges(namespace, name, state, next_time, last_time, interval)


class Scrape:
    """One scrape of a registry: samples by (name, labels), families by name."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.text = generate_latest(registry).decode()
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}
        self.samples: dict[tuple[str, Labels], float] = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in self.families.values()
            for sample in family.samples
        }

    def value(self, metric: str, /, **labels: str) -> float | None:
        return self.samples.get((metric, tuple(sorted(labels.items()))))

    def series(self, metric: str) -> dict[Labels, float]:
        return {
            labels: value for (sample, labels), value in self.samples.items() if sample == metric
        }


def per_cron_workflow(key: str, **extra: str) -> dict[str, str]:
    namespace, _, name = key.partition("/")
    return {"namespace": namespace, "name": name, **extra}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet()


@pytest.fixture
def metrics(registry: CollectorRegistry, fleet: FakeFleet) -> Metrics:
    metrics = Metrics(registry)
    metrics.attach(fleet)
    return metrics


def feed(metrics: Metrics, *events: Event) -> None:
    for event in events:
        metrics.emit(event)


def spawned(
    key: str,
    lag: float = 0.2,
    *,
    created: bool = True,
    catch_up: bool = False,
    replaced: tuple[str, ...] = (),
) -> Spawned:
    """The Spawned event of ``key`` at T0, recorded ``lag`` seconds after the instant."""
    return Spawned(
        time=T0 + timedelta(seconds=lag),
        key=key,
        scheduled_at=T0,
        workflow=f"{key.partition('/')[2]}-{int(T0.timestamp())}",
        created=created,
        catch_up=catch_up,
        replaced=replaced,
    )


def labelset(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


# --------------------------------------------------------------------------------------------
# Counters from events


def test_a_spawn_counts_as_triggered_and_its_lag_is_observed(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """``triggered_total`` per CronWorkflow; ``schedule_lag_seconds`` from the instant to the
    Workflow's creation, in the histogram's buckets."""
    feed(metrics, spawned("batch/nightly", lag=0.3), spawned("batch/nightly", lag=0.02))

    scrape = Scrape(registry)

    assert scrape.value("cronwf_triggered_total", **per_cron_workflow("batch/nightly")) == 2
    assert scrape.value("cronwf_schedule_lag_seconds_count") == 2
    assert scrape.value("cronwf_schedule_lag_seconds_sum") == pytest.approx(0.32)
    assert scrape.value("cronwf_schedule_lag_seconds_bucket", le="0.01") == 0
    assert scrape.value("cronwf_schedule_lag_seconds_bucket", le="0.025") == 1
    assert scrape.value("cronwf_schedule_lag_seconds_bucket", le="0.25") == 1
    assert scrape.value("cronwf_schedule_lag_seconds_bucket", le="0.5") == 2
    assert scrape.value("cronwf_schedule_lag_seconds_bucket", le="+Inf") == 2


def test_catch_up_and_already_existing_spawns_are_triggered_but_not_lag(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A catch-up run is late by design and an existing Workflow was created earlier: neither
    says anything about the timer's lag."""
    feed(
        metrics,
        spawned("batch/nightly", lag=40.0, catch_up=True),
        spawned("batch/nightly", lag=0.1, created=False),
    )

    scrape = Scrape(registry)

    assert scrape.value("cronwf_triggered_total", **per_cron_workflow("batch/nightly")) == 2
    assert scrape.value("cronwf_schedule_lag_seconds_count") == 0


def test_a_spawn_recorded_before_its_instant_counts_as_no_lag(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Clock skew can make the creation time precede the instant: the lag is 0, never
    negative."""
    feed(metrics, spawned("batch/nightly", lag=-0.5))

    scrape = Scrape(registry)

    assert scrape.value("cronwf_schedule_lag_seconds_sum") == 0
    assert scrape.value("cronwf_schedule_lag_seconds_bucket", le="0.01") == 1


def test_skips_count_by_reason_and_forbid_counts_as_a_concurrency_policy(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    def skipped(reason: SkipReason) -> Skipped:
        return Skipped(time=T0, key="batch/nightly", scheduled_at=T0, reason=reason)

    feed(
        metrics,
        skipped(SkipReason.CONCURRENCY_FORBID),
        skipped(SkipReason.CONCURRENCY_FORBID),
        skipped(SkipReason.SUSPENDED),
    )

    scrape = Scrape(registry)

    labels = per_cron_workflow("batch/nightly")
    assert scrape.series("cronwf_skipped_total") == {
        labelset(**labels, reason="ConcurrencyForbid"): 2,
        labelset(**labels, reason="Suspended"): 1,
    }
    assert scrape.series("cronwf_concurrencypolicy_triggered_total") == {
        labelset(**labels, policy="Forbid"): 2,
    }
    assert scrape.value("cronwf_triggered_total", **labels) is None


def test_a_replacing_spawn_counts_as_a_replace_concurrency_policy(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    feed(metrics, spawned("batch/nightly", replaced=("nightly-1",)), spawned("batch/nightly"))

    scrape = Scrape(registry)

    assert scrape.series("cronwf_concurrencypolicy_triggered_total") == {
        labelset(**per_cron_workflow("batch/nightly"), policy="Replace"): 1,
    }


def test_missed_instants_count_by_reason(metrics: Metrics, registry: CollectorRegistry) -> None:
    def missed(reason: MissedReason) -> Missed:
        return Missed(time=T0, key="batch/nightly", scheduled_at=T0, reason=reason)

    feed(
        metrics,
        missed(MissedReason.SUPERSEDED),
        missed(MissedReason.SUPERSEDED),
        missed(MissedReason.DEADLINE),
    )

    scrape = Scrape(registry)

    nightly = per_cron_workflow("batch/nightly")
    assert scrape.value("cronwf_missed_total", **nightly, reason="superseded") == 2
    assert scrape.value("cronwf_missed_total", **nightly, reason="deadline") == 1


def test_a_missed_event_summing_up_a_gap_counts_each_instant(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    summary = Missed(
        time=T0,
        key="batch/nightly",
        scheduled_at=T0,
        reason=MissedReason.SUPERSEDED,
        count=52_559,
        since=T0 - timedelta(days=365),
    )
    feed(
        metrics,
        summary,
        Missed(time=T0, key="batch/nightly", scheduled_at=T0, reason=MissedReason.SUPERSEDED),
    )

    scrape = Scrape(registry)

    nightly = per_cron_workflow("batch/nightly")
    assert scrape.value("cronwf_missed_total", **nightly, reason="superseded") == 52_560


def test_errors_count_as_spec_submission_or_expression_errors(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A bad spec counts in ``spec_errors_total``; a failed creation in ``spawn_errors_total``
    of its CronWorkflow and, having passed every policy, in ``triggered_total``; a failed
    Replace termination is a spawn error that triggered nothing; an expression that fails to
    evaluate (``when`` or stop) counts only in ``expression_errors_total``."""

    submission = Error(
        time=T0,
        key="batch/nightly",
        reason=ErrorReason.SUBMISSION_ERROR,
        message="boom",
        scheduled_at=T0,
    )
    spec = replace(submission, reason=ErrorReason.SPEC_ERROR, scheduled_at=None)

    feed(
        metrics,
        spec,
        replace(submission, triggered=True),
        submission,
        replace(submission, expression=True),
        replace(spec, expression=True),
    )

    scrape = Scrape(registry)

    labels = per_cron_workflow("batch/nightly")
    assert scrape.value("cronwf_spec_errors_total") == 1
    assert scrape.value("cronwf_expression_errors_total") == 2
    assert scrape.value("cronwf_spawn_errors_total", **labels) == 2
    assert scrape.value("cronwf_triggered_total", **labels) == 1


def test_counters_start_at_zero_for_the_service_and_absent_per_cron_workflow(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    scrape = Scrape(registry)

    assert scrape.value("cronwf_spec_errors_total") == 0
    assert scrape.value("cronwf_expression_errors_total") == 0
    assert scrape.series("cronwf_triggered_total") == {}
    assert scrape.value("cronwf_schedule_lag_seconds_count") == 0


@pytest.mark.parametrize(
    ("family", "kind", "help_text"),
    [
        ("cronwf_triggered", "counter", "Ticks that passed every policy and reached submission."),
        ("cronwf_skipped", "counter", "Instants decided and not run, by reason."),
        (
            "cronwf_concurrencypolicy_triggered",
            "counter",
            "Ticks where Forbid skipped or Replace terminated active runs.",
        ),
        ("cronwf_missed", "counter", "Instants that passed while nobody was ticking, by reason."),
        ("cronwf_spawn_errors", "counter", "Workflow creations that failed (SubmissionError)."),
        ("cronwf_spec_errors", "counter", "Invalid CronWorkflow specs found."),
        (
            "cronwf_expression_errors",
            "counter",
            "when or stopStrategy expressions that failed to evaluate.",
        ),
        (
            "cronwf_schedule_lag_seconds",
            "histogram",
            "Time from a scheduled instant to its Workflow being created.",
        ),
        ("cronwf_next_schedule_time_seconds", "gauge", "Unix time of the next scheduled instant."),
        (
            "cronwf_last_schedule_time_seconds",
            "gauge",
            "Unix time of the last instant a Workflow was spawned for.",
        ),
        (
            "cronwf_last_success_time_seconds",
            "gauge",
            "Unix time the last Workflow that succeeded finished.",
        ),
        (
            "cronwf_expected_interval_seconds",
            "gauge",
            "Longest gap between consecutive scheduled instants.",
        ),
        ("cronwf_stopped", "gauge", "1 when the stop strategy stopped it."),
        ("cronwf_suspended", "gauge", "1 when spec.suspend is true."),
        ("cronwf_cronworkflows", "gauge", "CronWorkflows by state."),
        ("cronwf_is_leader", "gauge", "1 when this replica is acting."),
        (
            "cronwf_manifest_errors",
            "gauge",
            "Manifest folders that cannot be listed (listing) and manifests that fail to load "
            "(file), now.",
        ),
    ],
)
def test_every_metric_of_the_design_is_exposed_with_its_type_and_help(
    metrics: Metrics, registry: CollectorRegistry, family: str, kind: str, help_text: str
) -> None:
    """DESIGN §12 lists these names; dashboards and alert rules use them as they are."""
    scrape = Scrape(registry)

    assert family in scrape.families
    assert scrape.families[family].type == kind
    assert scrape.families[family].documentation == help_text


# --------------------------------------------------------------------------------------------
# Gauges from the fleet view


def test_fleet_gauges_show_each_cron_workflow_at_scrape_time(
    metrics: Metrics, registry: CollectorRegistry, fleet: FakeFleet
) -> None:
    """Next and last schedule times and the expected interval come from the fleet view;
    a time that is not known (never spawned) has no series rather than a zero."""
    fleet.cron_workflows = [
        gauges("batch/nightly", next_time=1_000.0, last_time=900.0, interval=DAY),
        gauges("batch/fresh", next_time=2_000.0, interval=300.0),
    ]

    scrape = Scrape(registry)

    nightly, fresh = per_cron_workflow("batch/nightly"), per_cron_workflow("batch/fresh")
    assert scrape.value("cronwf_next_schedule_time_seconds", **nightly) == 1_000
    assert scrape.value("cronwf_next_schedule_time_seconds", **fresh) == 2_000
    assert scrape.value("cronwf_last_schedule_time_seconds", **nightly) == 900
    assert scrape.value("cronwf_last_schedule_time_seconds", **fresh) is None
    assert scrape.value("cronwf_expected_interval_seconds", **nightly) == DAY
    assert scrape.value("cronwf_expected_interval_seconds", **fresh) == 300
    assert scrape.value("cronwf_stopped", **nightly) == 0
    assert scrape.value("cronwf_suspended", **nightly) == 0


def test_cron_workflows_are_counted_by_state(
    metrics: Metrics, registry: CollectorRegistry, fleet: FakeFleet
) -> None:
    """Every state has a series, zero included, so an alert on ``invalid > 0`` has data."""
    fleet.cron_workflows = [
        gauges("a/one"),
        gauges("a/two"),
        gauges("a/three", state="suspended"),
        gauges("b/four", state="stopped"),
    ]

    scrape = Scrape(registry)

    assert scrape.series("cronwf_cronworkflows") == {
        (("state", "active"),): 2,
        (("state", "suspended"),): 1,
        (("state", "stopped"),): 1,
        (("state", "invalid"),): 0,
    }
    assert scrape.value("cronwf_suspended", **per_cron_workflow("a/three")) == 1
    assert scrape.value("cronwf_stopped", **per_cron_workflow("b/four")) == 1


def test_a_stopped_event_sets_the_stopped_gauge_at_once(
    metrics: Metrics, registry: CollectorRegistry, fleet: FakeFleet
) -> None:
    """The gauge follows the engine's event even before the fleet view shows the state."""
    fleet.cron_workflows = [gauges("batch/nightly")]

    metrics.emit(Stopped(time=T0, key="batch/nightly"))

    assert Scrape(registry).value("cronwf_stopped", **per_cron_workflow("batch/nightly")) == 1


def test_the_last_success_time_is_the_finish_of_the_last_succeeded_run(
    metrics: Metrics, registry: CollectorRegistry, fleet: FakeFleet
) -> None:
    fleet.cron_workflows = [gauges("batch/nightly")]
    succeeded_at = T0 + timedelta(minutes=3)

    feed(
        metrics,
        Completed(
            time=succeeded_at, key="batch/nightly", workflow="w1", phase=WorkflowPhase.SUCCEEDED
        ),
        Completed(
            time=T0 + timedelta(minutes=8),
            key="batch/nightly",
            workflow="w2",
            phase=WorkflowPhase.FAILED,
        ),
    )

    assert (
        Scrape(registry).value(
            "cronwf_last_success_time_seconds", **per_cron_workflow("batch/nightly")
        )
        == succeeded_at.timestamp()
    )


def test_is_leader_follows_the_fleet_view(
    metrics: Metrics, registry: CollectorRegistry, fleet: FakeFleet
) -> None:
    assert Scrape(registry).value("cronwf_is_leader") == 1
    fleet.leader = False
    assert Scrape(registry).value("cronwf_is_leader") == 0


def test_manifest_errors_show_what_the_sources_cannot_list_or_load_now(
    metrics: Metrics, registry: CollectorRegistry, fleet: FakeFleet
) -> None:
    """Both kinds are always there (at zero when all is well), so an alert on
    ``cronwf_manifest_errors{kind="listing"} > 0`` resolves when the folder is back."""
    assert Scrape(registry).series("cronwf_manifest_errors") == {
        (("kind", "listing"),): 0,
        (("kind", "file"),): 0,
    }

    fleet.errors = {"listing": 1, "file": 3}

    assert Scrape(registry).series("cronwf_manifest_errors") == {
        (("kind", "listing"),): 1,
        (("kind", "file"),): 3,
    }


def test_without_a_fleet_view_there_are_no_gauges_and_no_leadership(
    registry: CollectorRegistry,
) -> None:
    Metrics(registry)

    scrape = Scrape(registry)

    assert scrape.value("cronwf_is_leader") == 0
    assert scrape.series("cronwf_next_schedule_time_seconds") == {}
    assert scrape.value("cronwf_cronworkflows", state="active") == 0
    assert scrape.value("cronwf_manifest_errors", kind="listing") == 0


# --------------------------------------------------------------------------------------------
# Dropping the name label, forgetting a CronWorkflow


def test_without_the_name_label_series_are_aggregated_per_namespace(fleet: FakeFleet) -> None:
    """For very large fleets: no ``name`` label anywhere; counters are summed per namespace;
    per namespace the next time is the soonest, last times and the interval the latest and
    longest, stopped and suspended the number of CronWorkflows."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, with_name=False)
    metrics.attach(fleet)
    fleet.cron_workflows = [
        gauges("a/one", next_time=500.0, last_time=100.0, interval=300.0),
        gauges("a/two", state="stopped", next_time=200.0, last_time=400.0, interval=DAY),
        gauges("a/three", state="suspended", next_time=900.0),
        gauges("b/four", next_time=700.0, interval=60.0),
    ]
    feed(
        metrics,
        spawned("a/one"),
        spawned("a/two"),
        spawned("b/four"),
        Skipped(time=T0, key="a/one", scheduled_at=T0, reason=SkipReason.CONCURRENCY_FORBID),
        Skipped(time=T0, key="a/two", scheduled_at=T0, reason=SkipReason.CONCURRENCY_FORBID),
        Missed(time=T0, key="a/one", scheduled_at=T0, reason=MissedReason.DEADLINE),
    )

    scrape = Scrape(registry)

    assert "name=" not in scrape.text
    assert scrape.series("cronwf_triggered_total") == {
        (("namespace", "a"),): 2,
        (("namespace", "b"),): 1,
    }
    assert scrape.value("cronwf_skipped_total", namespace="a", reason="ConcurrencyForbid") == 2
    assert (
        scrape.value("cronwf_concurrencypolicy_triggered_total", namespace="a", policy="Forbid")
        == 2
    )
    assert scrape.value("cronwf_missed_total", namespace="a", reason="deadline") == 1
    assert scrape.value("cronwf_next_schedule_time_seconds", namespace="a") == 200
    assert scrape.value("cronwf_next_schedule_time_seconds", namespace="b") == 700
    assert scrape.value("cronwf_last_schedule_time_seconds", namespace="a") == 400
    assert scrape.value("cronwf_expected_interval_seconds", namespace="a") == DAY
    assert scrape.value("cronwf_stopped", namespace="a") == 1
    assert scrape.value("cronwf_suspended", namespace="a") == 1
    assert scrape.value("cronwf_stopped", namespace="b") == 0


def test_forget_removes_every_series_of_a_cron_workflow(
    metrics: Metrics, registry: CollectorRegistry, fleet: FakeFleet
) -> None:
    """A deleted CronWorkflow leaves no series behind; the others keep theirs."""
    for key in ("batch/deleted", "batch/kept"):
        feed(
            metrics,
            spawned(key),
            Skipped(time=T0, key=key, scheduled_at=T0, reason=SkipReason.CONCURRENCY_FORBID),
            Missed(time=T0, key=key, scheduled_at=T0, reason=MissedReason.DEADLINE),
            Error(
                time=T0,
                key=key,
                reason=ErrorReason.SUBMISSION_ERROR,
                message="refused",
                triggered=True,
            ),
            Completed(time=T0, key=key, workflow="w", phase=WorkflowPhase.SUCCEEDED),
            Stopped(time=T0, key=key),
        )
    fleet.cron_workflows = [gauges("batch/kept")]

    metrics.forget("batch/deleted")
    fleet.cron_workflows.append(gauges("batch/deleted"))  # the same name created again
    scrape = Scrape(registry)

    # Only what the fleet view shows of the new one remains: its counters start again at zero
    # (every CronWorkflow has them from the start), no time, not stopped.
    leftovers = {
        name: value
        for (name, labels), value in scrape.samples.items()
        if dict(labels).get("name") == "deleted"
    }
    assert leftovers == {
        "cronwf_stopped": 0,
        "cronwf_suspended": 0,
        "cronwf_triggered_total": 0,
        "cronwf_spawn_errors_total": 0,
        "cronwf_missed_total": 0,
        "cronwf_lost_total": 0,
    }
    assert scrape.value("cronwf_triggered_total", **per_cron_workflow("batch/kept")) == 2
    assert scrape.value("cronwf_stopped", **per_cron_workflow("batch/kept")) == 1
    assert scrape.value("cronwf_last_success_time_seconds", **per_cron_workflow("batch/kept")) == (
        T0.timestamp()
    )


# --------------------------------------------------------------------------------------------
# expected_interval


def test_expected_interval_of_weekdays_spans_the_weekend() -> None:
    """``0 2 * * 1-5``: the longest gap is Friday 02:00 to Monday 02:00, three days."""
    assert expected_interval(Schedule(["0 2 * * 1-5"]), T0) == 3 * DAY


def test_expected_interval_of_a_regular_schedule_is_its_period() -> None:
    assert expected_interval(Schedule(["*/5 * * * *"]), T0) == 300
    assert expected_interval(Schedule(["@every 90s"]), T0) == 90


def test_expected_interval_counts_a_dst_change() -> None:
    """Daily at 03:00 in Paris: the day the clocks go back (2026-10-25) lasts 25 hours."""
    october = datetime(2026, 10, 20, tzinfo=UTC)
    assert expected_interval(Schedule(["0 3 * * *"], "Europe/Paris"), october) == 25 * 3600


def test_expected_interval_of_a_schedule_that_never_fires_is_none() -> None:
    assert expected_interval(Schedule(["0 0 30 2 *"]), T0) is None


def test_expected_interval_of_an_hourly_weekday_schedule_spans_the_weekend() -> None:
    """``0 * * * 1-5`` (hourly, Monday to Friday): the longest gap is Friday 23:00 to Monday
    00:00, 49 hours; an alert at 1.5 × one hour would fire every weekend. Pins a bug: only 64
    instants are sampled (under three days here), so from a Monday the weekend is never
    seen and the interval is one hour."""
    assert expected_interval(Schedule(["0 * * * 1-5"]), T0) == 49 * 3600


def test_expected_interval_of_business_hours_spans_nights_and_weekends() -> None:
    """``*/5 9-17 * * 1-5``: the longest gap is Friday 17:55 to Monday 09:00. Pins the same
    bug: 64 samples cover five hours of one day."""
    assert expected_interval(Schedule(["*/5 9-17 * * 1-5"]), T0) == 2 * DAY + 15 * 3600 + 5 * 60


def test_expected_interval_of_a_yearly_schedule_does_not_depend_on_the_date() -> None:
    """``@yearly`` fires every 365 or 366 days, whatever the day the service starts. Pins a
    bug: the second instant must fall within 400 days of now, so from March on the interval
    is None (no series, no alert) and from mid-December it is a year."""
    in_march = expected_interval(Schedule(["@yearly"]), T0)
    in_december = expected_interval(Schedule(["@yearly"]), datetime(2026, 12, 20, tzinfo=UTC))

    assert in_december == 365 * DAY
    assert in_march == 365 * DAY
