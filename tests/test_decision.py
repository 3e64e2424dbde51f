"""The pure decisions of one tick, one catch-up and one history change (DESIGN §4-§7).

Every test fixes its instants: nothing here reads a clock or waits. The tick tests follow the
order of DESIGN §4 branch by branch, including which branch wins when two apply (a spec error
beats everything, the stop strategy is evaluated before ``suspend``, ``suspend`` is checked
before "already stopped", ``when`` before the concurrency policy).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from policies.decision import (
    CatchUp,
    CronWorkflow,
    ErrorReason,
    Fail,
    History,
    MissedReason,
    Phase,
    Skip,
    SkipReason,
    Spawn,
    TickDecision,
    WorkflowPhase,
    clear_spec_error,
    decide,
    plan_catch_up,
    record_completion,
    record_deleted,
    record_error,
    record_missed,
    record_skip,
    record_spawn,
    record_stopped,
    reset_cursor,
    seed_history,
    stop_error_message,
)
from policies.expressions import ExpressionError
from policies.spec import CronWorkflowSpec, StatusSeed, WorkflowMetadata
from policies.workflow import (
    CRON_WORKFLOW_LABEL,
    INSTANCE_ID_LABEL,
    SCHEDULED_TIME_ANNOTATION,
    render_workflow,
    workflow_name,
)

# A Monday, 09:00 UTC; the default schedule fires every 5 minutes.
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

WORKFLOW_SPEC: dict[str, Any] = {
    "entrypoint": "main",
    "templates": [{"name": "main", "container": {"image": "alpine:3.20", "args": ["hi"]}}],
}

# Fails to evaluate while lastScheduledTime is nil: nil arithmetic is an error, not false.
NEEDS_LAST_SCHEDULED_TIME = "(now() - cronworkflow.lastScheduledTime).Seconds() > 60"


def at(minutes: float) -> datetime:
    """``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


def make_spec(**changes: Any) -> CronWorkflowSpec:
    base = CronWorkflowSpec(
        name="nightly",
        namespace="batch",
        uid="5b0a3c1e-0000-4000-8000-000000000001",
        schedules=("*/5 * * * *",),
        workflow_spec=WORKFLOW_SPEC,
    )
    return replace(base, **changes)


def make_cron_workflow(**changes: Any) -> CronWorkflow:
    return CronWorkflow.prepare(make_spec(**changes))


def history(**changes: Any) -> History:
    return replace(History(cursor=at(-1)), **changes)


def tick(cron_workflow: CronWorkflow, past: History, minutes: float = 5) -> TickDecision:
    """Decide the instant ``minutes`` after T0, at that very instant."""
    return decide(cron_workflow, past, at(minutes), at(minutes))


# --------------------------------------------------------------------------------------------
# 1. Validation


def test_invalid_spec_is_a_spec_error_with_the_first_validation_message() -> None:
    """Argo's TestSpecError: the malformed schedule's message is the condition's message."""
    cron_workflow = make_cron_workflow(schedules=("10 * * 12737123 *",))

    decision = tick(cron_workflow, history())

    assert decision == TickDecision(
        Fail(
            ErrorReason.SPEC_ERROR,
            "cron schedule 10 * * 12737123 * is malformed: "
            "end of range (12737123) above maximum (12): 12737123",
        )
    )
    assert isinstance(decision.outcome, Fail)
    assert not decision.outcome.counts_as_failure


def test_spec_error_wins_over_suspend_and_stop() -> None:
    cron_workflow = make_cron_workflow(
        concurrency_policy="Sometimes", suspend=True, stop_expression="true"
    )

    decision = tick(cron_workflow, history(phase=Phase.STOPPED))

    assert decision == TickDecision(
        Fail(ErrorReason.SPEC_ERROR, "'Sometimes' is not a valid concurrencyPolicy")
    )


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"when": "{{= cronworkflow.failed }}"}, id="when"),
        pytest.param({"stop_expression": "cronworkflow.failed"}, id="stop"),
    ],
)
def test_an_expression_that_does_not_compile_is_a_spec_error(changes: dict[str, str]) -> None:
    """DESIGN §3 rule 7: an invalid CronWorkflow never fires, and its error is reported."""
    cron_workflow = make_cron_workflow(**changes)

    decision = tick(cron_workflow, history())

    assert not cron_workflow.valid
    outcome = decision.outcome
    assert isinstance(outcome, Fail)
    assert outcome.reason is ErrorReason.SPEC_ERROR
    assert "expected a boolean" in outcome.message


# --------------------------------------------------------------------------------------------
# 2. Stop strategy


def test_stop_strategy_that_becomes_true_stops_and_skips_the_tick() -> None:
    cron_workflow = make_cron_workflow(stop_expression="cronworkflow.failed >= 3")

    decision = tick(cron_workflow, history(failed=3))

    assert decision == TickDecision(Skip(SkipReason.STOPPED), stop=True)


def test_stop_strategy_that_is_false_lets_the_tick_spawn() -> None:
    cron_workflow = make_cron_workflow(stop_expression="cronworkflow.failed >= 3")

    decision = tick(cron_workflow, history(failed=2))

    assert decision == TickDecision(Spawn("nightly-" + str(int(at(5).timestamp()))))


def test_stop_expression_error_is_a_spec_error_with_argos_message() -> None:
    cron_workflow = make_cron_workflow(stop_expression=NEEDS_LAST_SCHEDULED_TIME)

    decision = tick(cron_workflow, history(last_scheduled_time=None))

    outcome = decision.outcome
    assert isinstance(outcome, Fail)
    assert outcome.reason is ErrorReason.SPEC_ERROR
    assert outcome.message.startswith(
        "failed to check CronWorkflow 'nightly' stopping condition: "
        "failed to evaluate stop expression: "
    )
    assert len(outcome.message) > len(
        "failed to check CronWorkflow 'nightly' stopping condition: "
        "failed to evaluate stop expression: "
    ), "the evaluation error itself follows Argo's prefix"
    assert not outcome.counts_as_failure
    assert outcome.expression
    assert not decision.stop


def test_stop_error_message_follows_argo() -> None:
    message = stop_error_message(make_cron_workflow(), ExpressionError("boom"))

    assert message == (
        "failed to check CronWorkflow 'nightly' stopping condition: "
        "failed to evaluate stop expression: boom"
    )


def test_stop_strategy_is_not_evaluated_again_once_stopped() -> None:
    """A stopped CronWorkflow stays stopped: an expression that would now fail is not run."""
    cron_workflow = make_cron_workflow(stop_expression=NEEDS_LAST_SCHEDULED_TIME)

    decision = tick(cron_workflow, history(phase=Phase.STOPPED))

    assert decision == TickDecision(Skip(SkipReason.STOPPED))


# --------------------------------------------------------------------------------------------
# 3-4. Suspended, stopped


def test_suspended_cron_workflow_skips_as_suspended() -> None:
    decision = tick(make_cron_workflow(suspend=True), history())

    assert decision == TickDecision(Skip(SkipReason.SUSPENDED))


def test_suspend_is_checked_before_the_stopped_phase() -> None:
    decision = tick(make_cron_workflow(suspend=True), history(phase=Phase.STOPPED))

    assert decision == TickDecision(Skip(SkipReason.SUSPENDED))


def test_stop_strategy_is_evaluated_before_suspend() -> None:
    """A suspended CronWorkflow still becomes Stopped when its stop strategy turns true."""
    cron_workflow = make_cron_workflow(suspend=True, stop_expression="cronworkflow.failed >= 1")

    decision = tick(cron_workflow, history(failed=1))

    assert decision == TickDecision(Skip(SkipReason.SUSPENDED), stop=True)


def test_stopped_cron_workflow_skips_as_stopped() -> None:
    decision = tick(make_cron_workflow(), history(phase=Phase.STOPPED))

    assert decision == TickDecision(Skip(SkipReason.STOPPED))


def test_stopped_is_checked_before_when() -> None:
    cron_workflow = make_cron_workflow(when=NEEDS_LAST_SCHEDULED_TIME)

    decision = tick(cron_workflow, history(phase=Phase.STOPPED))

    assert decision == TickDecision(Skip(SkipReason.STOPPED))


# --------------------------------------------------------------------------------------------
# 5. when


def test_when_false_skips_as_when_false() -> None:
    cron_workflow = make_cron_workflow(when="{{= cronworkflow.succeeded > 5 }}")

    decision = tick(cron_workflow, history(succeeded=5))

    assert decision == TickDecision(Skip(SkipReason.WHEN_FALSE))


def test_when_true_spawns() -> None:
    cron_workflow = make_cron_workflow(when="{{= cronworkflow.succeeded > 5 }}")

    decision = tick(cron_workflow, history(succeeded=6))

    assert isinstance(decision.outcome, Spawn)


def test_when_sees_the_streak_counters() -> None:
    cron_workflow = make_cron_workflow(when="cronworkflow.consecutiveFailed < 2")

    assert tick(cron_workflow, history(consecutive_failed=1)).outcome == Spawn(
        workflow_name("nightly", at(5))
    )
    assert tick(cron_workflow, history(consecutive_failed=2)) == TickDecision(
        Skip(SkipReason.WHEN_FALSE)
    )


def test_when_now_is_the_decision_time_not_the_scheduled_instant() -> None:
    """Argo's DST guard compares now() with lastScheduledTime; now() is when the tick runs."""
    cron_workflow = make_cron_workflow(
        when="{{= (now() - cronworkflow.lastScheduledTime).Seconds() > 3600 }}"
    )
    past = history(last_scheduled_time=at(-50))

    on_time = decide(cron_workflow, past, at(5), at(5))
    late = decide(cron_workflow, past, at(5), at(15))

    assert on_time == TickDecision(Skip(SkipReason.WHEN_FALSE))
    assert isinstance(late.outcome, Spawn)


def test_when_error_is_a_submission_error_that_counts_as_a_failure() -> None:
    cron_workflow = make_cron_workflow(when="{{= " + NEEDS_LAST_SCHEDULED_TIME + " }}")

    decision = tick(cron_workflow, history(last_scheduled_time=None))

    outcome = decision.outcome
    assert isinstance(outcome, Fail)
    assert outcome.reason is ErrorReason.SUBMISSION_ERROR
    assert outcome.message.startswith("run policy error: ")
    assert len(outcome.message) > len("run policy error: ")
    assert outcome.counts_as_failure
    assert outcome.expression


def test_when_is_evaluated_before_the_concurrency_policy() -> None:
    cron_workflow = make_cron_workflow(
        concurrency_policy="Forbid", when="{{= cronworkflow.succeeded > 5 }}"
    )

    decision = tick(cron_workflow, history(active=("nightly-1",)))

    assert decision == TickDecision(Skip(SkipReason.WHEN_FALSE))


# --------------------------------------------------------------------------------------------
# 6-7. Concurrency, spawn


def test_forbid_with_an_active_run_skips() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Forbid")

    decision = tick(cron_workflow, history(active=("nightly-1772441700",)))

    assert decision == TickDecision(Skip(SkipReason.CONCURRENCY_FORBID))


def test_forbid_without_an_active_run_spawns() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Forbid")

    decision = tick(cron_workflow, history(active=()))

    assert decision == TickDecision(Spawn(workflow_name("nightly", at(5))))


def test_replace_spawns_and_terminates_every_active_run() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Replace")

    decision = tick(cron_workflow, history(active=("nightly-a", "nightly-b")))

    assert decision == TickDecision(
        Spawn(workflow_name("nightly", at(5)), terminate=("nightly-a", "nightly-b"))
    )


def test_replace_without_an_active_run_terminates_nothing() -> None:
    cron_workflow = make_cron_workflow(concurrency_policy="Replace")

    decision = tick(cron_workflow, history(active=()))

    assert decision == TickDecision(Spawn(workflow_name("nightly", at(5)), terminate=()))


@pytest.mark.parametrize("policy", ["Allow", ""])
def test_allow_spawns_beside_active_runs(policy: str) -> None:
    cron_workflow = make_cron_workflow(concurrency_policy=policy)

    decision = tick(cron_workflow, history(active=("nightly-a",)))

    assert decision == TickDecision(Spawn(workflow_name("nightly", at(5))))


def test_spawned_workflow_is_named_after_the_unix_seconds_of_the_instant() -> None:
    """Argo's example: hello-world scheduled at 2022-02-04T05:34:00Z is hello-world-1643952840."""
    cron_workflow = make_cron_workflow(name="hello-world", schedules=("* * * * *",))
    instant = datetime(2022, 2, 4, 5, 34, tzinfo=UTC)

    decision = decide(cron_workflow, History(), instant, instant + timedelta(seconds=7))

    assert decision == TickDecision(Spawn("hello-world-1643952840"))


def test_spawn_name_uses_the_scheduled_instant_not_the_decision_time() -> None:
    decision = decide(make_cron_workflow(), history(), at(5), at(47))

    assert decision.outcome == Spawn(f"nightly-{int(at(5).timestamp())}")


# --------------------------------------------------------------------------------------------
# Catch-up (DESIGN §5)


def test_catch_up_with_no_missed_instant_plans_nothing() -> None:
    plan = plan_catch_up(make_cron_workflow(starting_deadline_seconds=600), at(1), at(4))

    assert plan == CatchUp()
    assert plan.cursor is None


def test_catch_up_runs_the_latest_instant_within_the_deadline_and_supersedes_the_others() -> None:
    plan = plan_catch_up(make_cron_workflow(starting_deadline_seconds=300), at(0), at(17))

    assert plan == CatchUp(
        missed=((at(5), MissedReason.SUPERSEDED), (at(10), MissedReason.SUPERSEDED)),
        run=at(15),
    )
    assert plan.cursor == at(15)


def test_catch_up_beyond_the_deadline_misses_every_instant_the_latest_for_deadline() -> None:
    plan = plan_catch_up(make_cron_workflow(starting_deadline_seconds=60), at(0), at(17))

    assert plan == CatchUp(
        missed=(
            (at(5), MissedReason.SUPERSEDED),
            (at(10), MissedReason.SUPERSEDED),
            (at(15), MissedReason.DEADLINE),
        )
    )
    assert plan.cursor == at(15)


@pytest.mark.parametrize("deadline", [None, 0])
def test_catch_up_without_a_positive_deadline_never_runs(deadline: int | None) -> None:
    """Argo's TestMissedScheduleAfterCronScheduleWithForbid: a nil deadline never catches up."""
    plan = plan_catch_up(make_cron_workflow(starting_deadline_seconds=deadline), at(0), at(6))

    assert plan == CatchUp(missed=((at(5), MissedReason.DEADLINE),))


def test_catch_up_leaves_an_instant_exactly_at_now_to_its_own_tick() -> None:
    plan = plan_catch_up(make_cron_workflow(starting_deadline_seconds=600), at(0), at(10))

    assert plan == CatchUp(run=at(5))


def test_catch_up_includes_an_instant_a_fraction_of_a_second_before_now() -> None:
    now = at(10) + timedelta(milliseconds=500)

    plan = plan_catch_up(make_cron_workflow(starting_deadline_seconds=600), at(0), now)

    assert plan == CatchUp(missed=((at(5), MissedReason.SUPERSEDED),), run=at(10))


def test_catch_up_excludes_the_instant_at_the_cursor() -> None:
    plan = plan_catch_up(make_cron_workflow(starting_deadline_seconds=600), at(5), at(9))

    assert plan == CatchUp()


def test_catch_up_exactly_at_the_deadline_is_too_late() -> None:
    """Argo's strict ``now < missed + startingDeadlineSeconds``."""
    cron_workflow = make_cron_workflow(starting_deadline_seconds=60)

    at_boundary = plan_catch_up(cron_workflow, at(0), at(6))
    just_before = plan_catch_up(cron_workflow, at(0), at(6) - timedelta(seconds=1))

    assert at_boundary == CatchUp(missed=((at(5), MissedReason.DEADLINE),))
    assert just_before == CatchUp(run=at(5))


def test_catch_up_in_a_time_zone_uses_that_zones_instants() -> None:
    """Argo's TestRunOutstandingWorkflowsAcrossTimezones, with fixed times: 09:01 in Auckland."""
    auckland_0901 = datetime(2026, 3, 2, 9, 1, tzinfo=timezone(timedelta(hours=13)))
    cron_workflow = make_cron_workflow(
        schedules=("1 9 * * *",), timezone="Pacific/Auckland", starting_deadline_seconds=120
    )
    now = auckland_0901 + timedelta(seconds=90)

    plan = plan_catch_up(cron_workflow, now - timedelta(days=1, minutes=1), now)

    assert plan == CatchUp(run=auckland_0901.astimezone(UTC))


def test_a_bounded_catch_up_lists_the_newest_and_counts_the_older_ones() -> None:
    """Eleven instants passed (every five minutes for 57 minutes); two may be listed: the two
    before the one that runs, and the eight older ones are counted with their span."""
    plan = plan_catch_up(make_cron_workflow(starting_deadline_seconds=300), at(0), at(57), listed=2)

    assert plan == CatchUp(
        missed=((at(45), MissedReason.SUPERSEDED), (at(50), MissedReason.SUPERSEDED)),
        run=at(55),
        unlisted=8,
        unlisted_since=at(5),
        unlisted_until=at(40),
    )
    assert plan.cursor == at(55)


def test_a_bounded_catch_up_without_a_run_lists_the_latest_as_deadline() -> None:
    plan = plan_catch_up(make_cron_workflow(), at(0), at(57), listed=2)

    assert plan == CatchUp(
        missed=((at(50), MissedReason.SUPERSEDED), (at(55), MissedReason.DEADLINE)),
        unlisted=9,
        unlisted_since=at(5),
        unlisted_until=at(45),
    )


@pytest.mark.parametrize("listed", [1, 2, 3, 4, 11, 12, 100])
@pytest.mark.parametrize("deadline", [None, 300])
@pytest.mark.parametrize(
    "schedules", [("*/5 * * * *",), ("@every 300s",), ("@every 5m", "7 * * * *")]
)
def test_a_bounded_catch_up_decides_what_an_unbounded_one_does(
    listed: int, deadline: int | None, schedules: tuple[str, ...]
) -> None:
    """The same run and the same instants missed: the listed ones are the newest of the
    unbounded plan's, the unlisted ones are counted; the cursor ends at the same instant."""
    cron_workflow = make_cron_workflow(schedules=schedules, starting_deadline_seconds=deadline)
    full = plan_catch_up(cron_workflow, at(0), at(57))
    bounded = plan_catch_up(cron_workflow, at(0), at(57), listed=listed)

    assert bounded.run == full.run
    assert bounded.cursor == full.cursor
    assert len(bounded.missed) == min(listed, len(full.missed))
    assert bounded.missed == full.missed[len(full.missed) - len(bounded.missed) :]
    assert bounded.unlisted == len(full.missed) - len(bounded.missed)
    if bounded.unlisted:
        assert bounded.unlisted_since == full.missed[0][0]
        assert bounded.unlisted_until == full.missed[bounded.unlisted - 1][0]
    else:
        assert (bounded.unlisted_since, bounded.unlisted_until) == (None, None)


def test_a_bounded_catch_up_of_a_year_of_seconds_counts_without_listing() -> None:
    """``@every 1s`` after a year away: 31,536,000 instants, counted, three listed."""
    year_later = T0 + timedelta(days=365)
    plan = plan_catch_up(make_cron_workflow(schedules=("@every 1s",)), T0, year_later, listed=3)

    assert plan.unlisted + len(plan.missed) == 365 * 86_400 - 1
    assert [instant for instant, _ in plan.missed] == [
        year_later - timedelta(seconds=n) for n in (3, 2, 1)
    ]
    assert plan.unlisted_since == T0 + timedelta(seconds=1)


def test_a_catch_up_lists_at_least_one_instant() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_catch_up(make_cron_workflow(), at(0), at(57), listed=0)


def test_catch_up_of_an_invalid_spec_plans_nothing() -> None:
    cron_workflow = make_cron_workflow(schedules=("61 * * * *",), starting_deadline_seconds=600)

    assert plan_catch_up(cron_workflow, at(0), at(60)) == CatchUp()


# --------------------------------------------------------------------------------------------
# History transitions


def test_record_spawn_adds_the_run_and_sets_last_scheduled_time_and_phase() -> None:
    after = record_spawn(history(), at(5), "nightly-5")

    assert after.active == ("nightly-5",)
    assert after.last_scheduled_time == at(5)
    assert after.cursor == at(5)
    assert after.phase is Phase.ACTIVE


def test_record_spawn_is_idempotent() -> None:
    once = record_spawn(history(), at(5), "nightly-5")

    twice = record_spawn(once, at(5), "nightly-5")

    assert twice == once
    assert twice.active == ("nightly-5",)


def test_record_spawn_clears_only_the_submission_error() -> None:
    past = history(conditions={"SubmissionError": "Failed to submit Workflow: x", "Other": "y"})

    after = record_spawn(past, at(5), "nightly-5")

    assert after.conditions == {"Other": "y"}


def test_record_spawn_keeps_the_latest_last_scheduled_time_and_cursor() -> None:
    later = record_spawn(history(), at(10), "nightly-10")

    after = record_spawn(later, at(5), "nightly-5")

    assert after.last_scheduled_time == at(10)
    assert after.cursor == at(10)
    assert after.active == ("nightly-10", "nightly-5")


def test_record_spawn_keeps_a_stopped_cron_workflow_stopped() -> None:
    after = record_spawn(history(phase=Phase.STOPPED), at(5), "nightly-5")

    assert after.phase is Phase.STOPPED


def test_record_completion_counts_a_success_and_extends_its_streak() -> None:
    past = history(active=("a", "b"), succeeded=4, consecutive_succeeded=1, consecutive_failed=0)

    completion = record_completion(past, "a", WorkflowPhase.SUCCEEDED)

    assert completion.counted
    after = completion.history
    assert after.active == ("b",)
    assert (after.succeeded, after.failed) == (5, 0)
    assert (after.consecutive_succeeded, after.consecutive_failed) == (2, 0)


def test_record_completion_counts_each_run_once() -> None:
    first = record_completion(history(active=("a",)), "a", WorkflowPhase.FAILED)

    second = record_completion(first.history, "a", WorkflowPhase.FAILED)

    assert first.counted
    assert not second.counted
    assert second.history == first.history
    assert second.history.failed == 1


def test_record_completion_of_a_run_never_active_is_not_counted() -> None:
    past = history(active=("a",))

    completion = record_completion(past, "stranger", WorkflowPhase.SUCCEEDED)

    assert completion == type(completion)(past, counted=False)


@pytest.mark.parametrize("phase", [WorkflowPhase.FAILED, WorkflowPhase.ERROR])
def test_failed_and_error_count_as_failed_and_reset_the_success_streak(
    phase: WorkflowPhase,
) -> None:
    past = history(active=("a",), succeeded=3, consecutive_succeeded=3)

    after = record_completion(past, "a", phase).history

    assert (after.succeeded, after.failed) == (3, 1)
    assert (after.consecutive_succeeded, after.consecutive_failed) == (0, 1)


def test_success_resets_the_failure_streak() -> None:
    past = history(active=("a",), failed=2, consecutive_failed=2)

    after = record_completion(past, "a", WorkflowPhase.SUCCEEDED).history

    assert (after.consecutive_succeeded, after.consecutive_failed) == (1, 0)
    assert after.failed == 2


def test_a_counted_success_records_when_it_finished() -> None:
    past = history(active=("a", "b"), last_succeeded_time=at(1))

    after = record_completion(past, "a", WorkflowPhase.SUCCEEDED, finished_at=at(7)).history

    assert after.last_succeeded_time == at(7)


def test_the_last_success_time_only_moves_forward_and_only_for_counted_successes() -> None:
    """A success reported with an older finish time (observed late) keeps the later one; a
    failure, or a success observed again, changes nothing."""
    past = history(active=("a", "b", "c"), last_succeeded_time=at(9))

    late = record_completion(past, "a", WorkflowPhase.SUCCEEDED, finished_at=at(7)).history
    failed = record_completion(late, "b", WorkflowPhase.FAILED, finished_at=at(12)).history
    again = record_completion(failed, "a", WorkflowPhase.SUCCEEDED, finished_at=at(13))

    assert late.last_succeeded_time == at(9)
    assert failed.last_succeeded_time == at(9)
    assert not again.counted
    assert again.history.last_succeeded_time == at(9)


def test_record_error_of_a_submission_error_counts_a_failure() -> None:
    fail = Fail(ErrorReason.SUBMISSION_ERROR, "Failed to submit Workflow: forbidden")
    past = history(failed=1, consecutive_failed=1, consecutive_succeeded=0, succeeded=2)

    after = record_error(past, at(5), fail)

    assert (after.failed, after.consecutive_failed, after.consecutive_succeeded) == (2, 2, 0)
    assert after.succeeded == 2
    assert after.conditions == {"SubmissionError": "Failed to submit Workflow: forbidden"}
    assert after.cursor == at(5)
    assert after.last_scheduled_time is None, "only a successful submission sets it"


def test_record_error_of_a_submission_error_resets_the_success_streak() -> None:
    fail = Fail(ErrorReason.SUBMISSION_ERROR, "run policy error: x")

    after = record_error(history(consecutive_succeeded=4), at(5), fail)

    assert (after.consecutive_succeeded, after.consecutive_failed) == (0, 1)


def test_record_error_of_a_spec_error_counts_nothing() -> None:
    fail = Fail(ErrorReason.SPEC_ERROR, "cron schedule x is malformed")

    after = record_error(history(failed=1), None, fail)

    assert after.failed == 1
    assert after.consecutive_failed == 0
    assert after.conditions == {"SpecError": "cron schedule x is malformed"}
    assert after.cursor == at(-1), "an error outside any instant does not move the cursor"


def test_clear_spec_error_removes_only_the_spec_error() -> None:
    past = history(conditions={"SpecError": "bad", "SubmissionError": "worse"})

    assert clear_spec_error(past).conditions == {"SubmissionError": "worse"}
    assert clear_spec_error(history()) == history()


def test_record_deleted_drops_the_run_and_leaves_the_counters() -> None:
    past = history(active=("a", "b"), succeeded=2, failed=1, consecutive_failed=1)

    after = record_deleted(past, "a")

    assert after == replace(past, active=("b",))
    assert record_deleted(after, "a") == after


def test_record_skip_advances_the_cursor_but_never_moves_it_back() -> None:
    skipped = record_skip(history(), at(5))

    assert skipped.cursor == at(5)
    assert skipped.last_scheduled_time is None
    assert record_skip(skipped, at(0)).cursor == at(5)


def test_record_missed_moves_the_cursor_past_every_missed_instant() -> None:
    after = record_missed(history(), (at(5), at(10), at(15)))

    assert after.cursor == at(15)
    assert after.last_scheduled_time is None
    assert (after.succeeded, after.failed) == (0, 0)


def test_record_stopped_sets_the_stopped_phase() -> None:
    after = record_stopped(history(phase=Phase.ACTIVE))

    assert after.phase is Phase.STOPPED
    assert after.stopped


def test_reset_cursor_moves_the_cursor_to_now_with_the_new_signature() -> None:
    after = reset_cursor(history(cursor=at(0), signature="old"), "new", at(7))

    assert (after.cursor, after.signature) == (at(7), "new")


def test_seed_history_starts_from_the_status_last_scheduled_time_and_counters() -> None:
    paris = timezone(timedelta(hours=1))
    status = StatusSeed(
        succeeded=7,
        failed=2,
        last_scheduled_time=datetime(2026, 3, 2, 9, 0, tzinfo=paris),
        phase="Active",
        active=("nightly-1772438400",),
    )
    cron_workflow = make_cron_workflow(status=status)

    seeded = seed_history(cron_workflow, at(60))

    assert seeded == History(
        cursor=datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
        signature=cron_workflow.signature,
        last_scheduled_time=datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
        succeeded=7,
        failed=2,
        phase=Phase.ACTIVE,
        active=("nightly-1772438400",),
    )
    assert seeded.cursor is not None
    assert seeded.cursor.utcoffset() == timedelta(0)


def test_seed_history_without_last_scheduled_time_starts_at_now() -> None:
    cron_workflow = make_cron_workflow()

    seeded = seed_history(cron_workflow, at(60))

    assert seeded == History(cursor=at(60), signature=cron_workflow.signature)


def test_seed_history_keeps_a_stopped_phase() -> None:
    seeded = seed_history(make_cron_workflow(status=StatusSeed(phase="Stopped")), at(0))

    assert seeded.stopped


def test_signature_changes_with_the_schedules_and_the_time_zone() -> None:
    base = make_cron_workflow()

    assert make_cron_workflow().signature == base.signature
    assert make_cron_workflow(schedules=("*/10 * * * *",)).signature != base.signature
    assert make_cron_workflow(timezone="Europe/Paris").signature != base.signature
    assert make_cron_workflow(suspend=True).signature == base.signature


@pytest.mark.parametrize(
    ("schedules", "zone", "argos"),
    [
        (("* * * * *",), "", "* * * * *"),
        (("* * * * *",), "America/Los_Angeles", "CRON_TZ=America/Los_Angeles * * * * *"),
        (("* * * * *", "0 * * * *"), "", "* * * * *,0 * * * *"),
        (
            ("* * * * *", "0 * * * *"),
            "America/Los_Angeles",
            "CRON_TZ=America/Los_Angeles * * * * *,CRON_TZ=America/Los_Angeles 0 * * * *",
        ),
        (("41 12 * * *",), "America/New_York", "CRON_TZ=America/New_York 41 12 * * *"),
        (
            ("@every 90s", "@daily"),
            "Pacific/Niue",
            "CRON_TZ=Pacific/Niue @every 90s,CRON_TZ=Pacific/Niue @daily",
        ),
    ],
)
def test_signature_is_argos_schedule_with_timezone_string(
    schedules: tuple[str, ...], zone: str, argos: str
) -> None:
    """Byte for byte ``GetScheduleWithTimezoneString()`` (Argo's cron_workflow_types_test.go
    and TestLastUsedSchedule): what Argo compares its ``last-used-schedule`` annotation with."""
    assert make_cron_workflow(schedules=schedules, timezone=zone).signature == argos


def test_signature_of_the_deprecated_schedule_is_argo_3_7s_string() -> None:
    cron_workflow = make_cron_workflow(
        schedules=(), deprecated_schedule="0 2 * * *", timezone="UTC"
    )

    assert cron_workflow.signature == "CRON_TZ=UTC 0 2 * * *"


# Seeding a history from what the object carries (DESIGN §5, §9; reference §1.6)

SEEN = at(60)  # when the CronWorkflow without history is first seen
LAST_SCHEDULED = at(20)
LAST_DECIDED = at(45)


def seed_status(**changes: Any) -> StatusSeed:
    """A status with ``lastScheduledTime`` at(20), as Argo or cronwf left it."""
    return replace(StatusSeed(succeeded=3, last_scheduled_time=LAST_SCHEDULED), **changes)


def seeded_cursor(status: StatusSeed, **spec: Any) -> datetime | None:
    return seed_history(make_cron_workflow(status=status, **spec), SEEN).cursor


def current_schedule() -> str:
    return make_cron_workflow().signature


@pytest.mark.parametrize("required", [False, True])
def test_seed_history_with_the_current_last_used_schedule_starts_from_last_scheduled_time(
    required: bool,
) -> None:
    """Argo's ``IsUsingNewSchedule()`` is false: the instants since ``lastScheduledTime`` are
    outstanding, and the catch-up rule decides them, in any mode."""
    status = seed_status(
        last_used_schedule=current_schedule(), last_used_schedule_required=required
    )

    assert seeded_cursor(status) == LAST_SCHEDULED


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize(
    "recorded", ["*/10 * * * *", "CRON_TZ=Europe/Paris */5 * * * *", "*/5 * * * * ", ""]
)
def test_seed_history_with_another_last_used_schedule_starts_at_now(
    recorded: str, required: bool
) -> None:
    """The schedule changed since the status was written (argo-workflows#7182): nothing
    outstanding runs, exactly as Argo would not. The comparison is byte for byte."""
    status = seed_status(
        last_used_schedule=recorded,
        last_decided_time=LAST_DECIDED,
        last_used_schedule_required=required,
    )

    assert seeded_cursor(status) == SEEN


def test_seed_history_from_the_cluster_without_the_last_used_schedule_starts_at_now() -> None:
    """Argo reads a missing annotation as "the schedule just changed"; so does cronwf for an
    object in the cluster, which Argo's controller may have handed over."""
    status = seed_status(last_used_schedule_required=True)

    assert seeded_cursor(status) == SEEN


def test_seed_history_from_a_manifest_without_the_last_used_schedule_keeps_the_status() -> None:
    """SIMULATE.md: a manifest's ``lastScheduledTime`` seeds the cursor, annotation or not."""
    assert seeded_cursor(seed_status()) == LAST_SCHEDULED


def test_seed_history_starts_from_the_last_decided_time_under_the_current_schedule() -> None:
    """A restart without Redis: the instants cronwf skipped after its last spawn (suspended,
    stopped, ``when``, ``Forbid``, missed) were decided, and are not decided again."""
    status = seed_status(
        last_used_schedule=current_schedule(),
        last_decided_time=LAST_DECIDED,
        last_used_schedule_required=True,
    )

    seeded = seed_history(make_cron_workflow(status=status), SEEN)

    assert seeded.cursor == LAST_DECIDED
    assert seeded.last_scheduled_time == LAST_SCHEDULED  # still the last spawn
    assert seeded.succeeded == 3


def test_seed_history_ignores_a_last_decided_time_without_the_last_used_schedule() -> None:
    """The cursor is an instant of one schedule: without the annotation naming it, which one
    is unknown, and the other rules apply."""
    assert seeded_cursor(seed_status(last_decided_time=LAST_DECIDED)) == LAST_SCHEDULED
    assert seeded_cursor(StatusSeed(last_decided_time=LAST_DECIDED)) == SEEN


def test_seed_history_takes_the_later_of_last_scheduled_and_last_decided_times() -> None:
    """Handed to Argo and back: Argo moved ``lastScheduledTime`` past the cursor cronwf left,
    which it does not update. Argo's spawns are not decided again."""
    status = seed_status(
        last_used_schedule=current_schedule(),
        last_decided_time=at(10),
        last_used_schedule_required=True,
    )

    assert seeded_cursor(status) == LAST_SCHEDULED


def test_seed_history_with_only_a_last_decided_time_starts_there() -> None:
    """A CronWorkflow that never spawned (suspended from the start) still keeps its cursor."""
    status = StatusSeed(
        last_used_schedule=current_schedule(),
        last_decided_time=LAST_DECIDED,
        last_used_schedule_required=True,
    )

    assert seeded_cursor(status) == LAST_DECIDED


def test_seed_history_gives_the_cursor_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    status = StatusSeed(
        last_used_schedule=current_schedule(),
        last_decided_time=LAST_DECIDED.astimezone(paris),
        last_used_schedule_required=True,
    )

    cursor = seeded_cursor(status)

    assert cursor == LAST_DECIDED
    assert cursor is not None
    assert cursor.utcoffset() == timedelta(0)


def test_seed_history_compares_the_last_used_schedule_with_the_time_zone() -> None:
    """``CRON_TZ=<zone> `` is part of the string: the same fields in another zone are another
    schedule."""
    in_paris = make_cron_workflow(timezone="Europe/Paris").signature
    status = seed_status(last_used_schedule=in_paris, last_used_schedule_required=True)

    assert seeded_cursor(status, timezone="Europe/Paris") == LAST_SCHEDULED
    assert seeded_cursor(status) == SEEN


# --------------------------------------------------------------------------------------------
# The spawned Workflow (DESIGN §7)


def test_rendered_workflow_has_the_instant_name_labels_annotation_and_owner() -> None:
    spec = make_spec(name="hello-world", namespace="argo")
    instant = datetime(2022, 2, 4, 5, 34, tzinfo=UTC)

    workflow = render_workflow(spec, instant)

    assert workflow == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": "hello-world-1643952840",
            "namespace": "argo",
            "labels": {CRON_WORKFLOW_LABEL: "hello-world"},
            "annotations": {SCHEDULED_TIME_ANNOTATION: "2022-02-04T05:34:00Z"},
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "CronWorkflow",
                    "name": "hello-world",
                    "uid": spec.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": WORKFLOW_SPEC,
    }


def test_scheduled_time_annotation_is_rfc3339_in_utc_whatever_the_zone() -> None:
    los_angeles = timezone(timedelta(hours=-8))
    instant = datetime(2020, 11, 1, 1, 59, tzinfo=los_angeles)

    workflow = render_workflow(make_spec(timezone="America/Los_Angeles"), instant)

    assert workflow["metadata"]["annotations"] == {
        SCHEDULED_TIME_ANNOTATION: "2020-11-01T09:59:00Z"
    }
    assert workflow["metadata"]["name"] == f"nightly-{int(instant.timestamp())}"


def test_creator_and_instance_id_labels_are_copied_and_other_labels_are_not() -> None:
    labels = {
        "workflows.argoproj.io/creator": "system-serviceaccount-argo",
        "workflows.argoproj.io/creator-email": "ops.example.com",
        "workflows.argoproj.io/creator-preferred-username": "ops",
        INSTANCE_ID_LABEL: "test-controller",
        "team": "data",
    }

    workflow = render_workflow(make_spec(labels=labels), at(5))

    assert workflow["metadata"]["labels"] == {
        "workflows.argoproj.io/creator": "system-serviceaccount-argo",
        "workflows.argoproj.io/creator-email": "ops.example.com",
        "workflows.argoproj.io/creator-preferred-username": "ops",
        INSTANCE_ID_LABEL: "test-controller",
        CRON_WORKFLOW_LABEL: "nightly",
    }


def test_workflow_metadata_labels_and_annotations_come_last_and_may_override() -> None:
    metadata = WorkflowMetadata(
        labels={"label1": "value1", CRON_WORKFLOW_LABEL: "renamed", INSTANCE_ID_LABEL: "other"},
        annotations={"annotation2": "value2", SCHEDULED_TIME_ANNOTATION: "overridden"},
    )
    spec = make_spec(labels={INSTANCE_ID_LABEL: "test-controller"}, workflow_metadata=metadata)

    workflow = render_workflow(spec, at(5))

    assert workflow["metadata"]["labels"] == {
        "label1": "value1",
        CRON_WORKFLOW_LABEL: "renamed",
        INSTANCE_ID_LABEL: "other",
    }
    assert workflow["metadata"]["annotations"] == {
        "annotation2": "value2",
        SCHEDULED_TIME_ANNOTATION: "overridden",
    }


def test_workflow_metadata_finalizers_are_appended() -> None:
    spec = make_spec(workflow_metadata=WorkflowMetadata(finalizers=("finalizer1", "finalizer2")))

    workflow = render_workflow(spec, at(5))

    assert workflow["metadata"]["finalizers"] == ["finalizer1", "finalizer2"]


def test_rendered_workflow_has_exactly_one_controller_owner_reference() -> None:
    workflow = render_workflow(make_spec(), at(5))

    owners = workflow["metadata"]["ownerReferences"]
    assert len(owners) == 1
    assert owners[0]["controller"] is True
    assert owners[0]["blockOwnerDeletion"] is True
    assert (owners[0]["kind"], owners[0]["name"]) == ("CronWorkflow", "nightly")


def test_rendered_spec_is_a_deep_copy_of_the_workflow_spec() -> None:
    spec = make_spec(
        workflow_spec={
            "entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "alpine", "args": ["a"]}}],
        }
    )

    workflow = render_workflow(spec, at(5))
    workflow["spec"]["templates"][0]["container"]["args"].append("injected")
    workflow["spec"]["entrypoint"] = "other"

    assert spec.workflow_spec == {
        "entrypoint": "main",
        "templates": [{"name": "main", "container": {"image": "alpine", "args": ["a"]}}],
    }
    assert render_workflow(spec, at(5))["spec"]["templates"][0]["container"]["args"] == ["a"]


def test_rendering_does_not_share_metadata_between_runs() -> None:
    metadata = WorkflowMetadata(labels={"team": "data"}, finalizers=("finalizer1",))
    spec = make_spec(workflow_metadata=metadata)

    first = render_workflow(spec, at(5))
    first["metadata"]["labels"]["team"] = "changed"
    first["metadata"]["finalizers"].append("more")

    assert metadata.labels == {"team": "data"}
    assert metadata.finalizers == ("finalizer1",)
    assert render_workflow(spec, at(10))["metadata"]["labels"]["team"] == "data"
