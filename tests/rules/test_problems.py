"""The problems stage: a problem record opens when incidents of one key recur (`by: key`; a
reopen counts) or incidents share a root cause CI (`by: ci`), and later incidents link to it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rules.model import ProblemStatus, TimelineKind
from rules.ruleset import ProblemBy, ProblemRule, RuleSet
from tests.rules.builders import (
    at,
    correlate,
    firing,
    labels,
    minutes,
    problem,
    resolved,
    shipped_rules,
    shipped_topology,
)
from tests.rules.world import Pipeline

DISK = labels("DiskFull", "db-1")
HOUR = 3600


def occurrences(pipeline: Pipeline, starts: list[float], fingerprint: str = "a") -> None:
    """The alert fires at each start and resolves a minute later."""
    for start in starts:
        pipeline.send(firing(fingerprint, DISK, since=start), at(start))
        pipeline.send(resolved(fingerprint, DISK, since=start, until=start + 60), at(start + 60))


# Starts two hours apart open new incidents (past the one-hour reopen window); starts ten
# minutes apart reopen the same incident.
APART, CLOSE = 2 * HOUR, minutes(10)


@pytest.mark.parametrize(
    ("rule", "starts", "linked"),
    [
        pytest.param(
            problem("recurring", count=3, within=24 * HOUR),
            [0, APART],
            0,
            id="two incidents of a key are not yet a problem at count 3",
        ),
        pytest.param(
            problem("recurring", count=3, within=24 * HOUR),
            [0, APART, 2 * APART],
            3,
            id="the third incident of a key opens a problem that lists all three",
        ),
        pytest.param(
            problem("recurring", count=3, within=24 * HOUR),
            [0, CLOSE, 2 * CLOSE],
            1,
            id="reopens count as occurrences of the one incident",
        ),
        pytest.param(
            problem("recurring", count=3, within=3 * HOUR),
            [0, APART, 2 * APART],
            0,
            id="incidents opened before the within period do not count",
        ),
        pytest.param(
            problem("recurring", count=3, within=24 * HOUR, rules=frozenset({"other"})),
            [0, APART, 2 * APART],
            0,
            id="a rule limited to other correlate rules' incidents ignores these",
        ),
        pytest.param(
            problem("recurring", count=3, within=24 * HOUR),
            [0, APART, 2 * APART, 3 * APART],
            4,
            id="a later incident of the key links to the open problem",
        ),
    ],
)
def test_recurring_incidents(rule: ProblemRule, starts: list[float], linked: int) -> None:
    pipeline = Pipeline(RuleSet(correlate=(correlate("disk"),), problems=(rule,)))
    occurrences(pipeline, starts)
    with_problem = [i for i in pipeline.incidents() if i.problem_id is not None]
    assert len(with_problem) == linked
    if not linked:
        assert pipeline.problems() == []
        return
    [found] = pipeline.problems()
    assert (found.key, found.rule, found.status) == (
        "recurring:disk{alertname='DiskFull'}",
        "recurring",
        ProblemStatus.OPEN,
    )
    assert found.title == "Recurring: DiskFull on db-1"
    assert found.incident_count == linked
    assert {i.problem_id for i in with_problem} == {found.id}


def test_every_linked_incident_says_so_on_its_timeline() -> None:
    rules = RuleSet(
        correlate=(correlate("disk"),),
        problems=(problem("recurring", count=2, within=24 * HOUR),),
    )
    pipeline = Pipeline(rules)
    occurrences(pipeline, [0, APART])
    for incident in pipeline.incidents():
        [entry] = [e for e in pipeline.timeline(incident) if e.kind is TimelineKind.PROBLEM_LINKED]
        assert (entry.actor, entry.message) == (
            "rule:recurring",
            "linked to problem 'Recurring: DiskFull on db-1' (rule recurring)",
        )
    assert pipeline.decisions("problems") == [
        ("recurring", "opened"),
        ("recurring", "linked"),
        ("recurring", "linked"),
    ]


def test_a_resolved_problem_takes_no_more_incidents_and_counting_starts_again() -> None:
    rules = RuleSet(
        correlate=(correlate("disk"),), problems=(problem("recurring", count=2, within=24 * HOUR),)
    )
    pipeline = Pipeline(rules)
    occurrences(pipeline, [0, APART])
    [first] = pipeline.problems()
    pipeline.world.put_problem(replace(first, status=ProblemStatus.RESOLVED))
    occurrences(pipeline, [2 * APART])
    # The new incident and the one before it (both within 24h) recur: a new problem.
    latest = pipeline.incidents()[-1]
    assert latest.problem_id is not None
    assert latest.problem_id != first.id


CI_RULES = RuleSet(
    topology=shipped_topology(),
    correlate=(correlate("per-alert", group_by=("alertname", "host")),),
    problems=(problem("shared", by=ProblemBy.CI, count=2, within=HOUR),),
)


@pytest.mark.parametrize(
    ("second", "seconds", "problem_ci"),
    [
        pytest.param(
            labels("HighLoad", "db-1"),
            600,
            "db-1",
            id="two incidents of one CI within the period open a problem for the CI",
        ),
        pytest.param(
            labels("HighLoad", "db-2"),
            600,
            None,
            id="incidents of two CIs are no shared cause",
        ),
        pytest.param(
            labels("HighLoad", "db-1"),
            HOUR + 1,
            None,
            id="an incident of the CI before the period does not count",
        ),
        pytest.param(
            labels("HighLoad", "laptop-7"),
            600,
            None,
            id="incidents without a CI never count",
        ),
    ],
)
def test_incidents_on_one_ci(
    second: dict[str, str], seconds: float, problem_ci: str | None
) -> None:
    pipeline = Pipeline(CI_RULES)
    pipeline.send(firing("a", DISK), at(0))
    pipeline.send(firing("b", second, since=seconds), at(seconds))
    problems = pipeline.problems()
    if problem_ci is None:
        assert problems == []
        return
    [found] = problems
    assert (found.ci, found.title, found.incident_count) == (
        problem_ci,
        f"Repeated incidents on {problem_ci}",
        2,
    )


def test_one_incident_reopening_is_no_shared_cause() -> None:
    pipeline = Pipeline(CI_RULES)
    occurrences(pipeline, [0, CLOSE, 2 * CLOSE])
    incident = pipeline.only_incident()
    assert (incident.reopen_count, incident.problem_id) == (2, None)
    assert pipeline.problems() == []


def test_a_rule_whose_count_is_not_reached_leaves_the_incident_to_the_next_rule() -> None:
    rules = replace(
        CI_RULES,
        problems=(
            problem("recurring", count=3, within=24 * HOUR),
            problem("shared", by=ProblemBy.CI, count=2, within=HOUR),
        ),
    )
    pipeline = Pipeline(rules)
    pipeline.send(firing("a", DISK), at(0))
    pipeline.send(firing("b", labels("HighLoad", "db-1"), since=60), at(60))
    [found] = pipeline.problems()
    assert (found.rule, found.incident_count) == ("shared", 2)


def test_shipped_rules_open_a_problem_for_two_incidents_on_one_ci() -> None:
    pipeline = Pipeline(shipped_rules())
    pipeline.send(firing("a", labels("DiskFull", "db-1", instance="db-1:9100")), at(0))
    pipeline.send(firing("b", labels("HighLoad", "db-1", instance="db-1:9100")), at(60))
    assert len(pipeline.incidents()) == 2
    [found] = pipeline.problems()
    assert (found.rule, found.ci) == ("shared-root-cause", "db-1")


def test_shipped_rules_open_a_problem_for_an_incident_recurring_three_times() -> None:
    pipeline = Pipeline(shipped_rules())
    for start in (0, APART, 2 * APART):
        item = labels("DiskFull", "db-1", instance="db-1:9100")
        pipeline.send(firing("a", item, since=start), at(start))
        pipeline.send(resolved("a", item, since=start, until=start + 60), at(start + 60))
    [found] = pipeline.problems()
    assert (found.rule, found.incident_count) == ("recurring", 3)


def test_a_ci_rule_limited_to_some_correlate_rules_counts_only_their_incidents() -> None:
    # `rules: [host-down]`: a disk incident on db-1 and then a host-down incident on db-1 are
    # not two host-down incidents on one CI.
    rules = RuleSet(
        topology=shipped_topology(),
        correlate=(
            correlate("host-down", 'alertname="HostDown"', group_by=("host",)),
            correlate("per-alert", group_by=("alertname", "host")),
        ),
        problems=(
            problem(
                "shared", by=ProblemBy.CI, count=2, within=HOUR, rules=frozenset({"host-down"})
            ),
        ),
    )
    pipeline = Pipeline(rules)
    pipeline.send(firing("disk", DISK), at(0))
    pipeline.send(firing("down", labels("HostDown", "db-1"), since=60), at(60))
    assert pipeline.problems() == []
    assert [i.problem_id for i in pipeline.incidents()] == [None, None]
