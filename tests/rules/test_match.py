"""Decision tables for the Alertmanager-style matchers of `rules.match`."""

from __future__ import annotations

import pytest

from rules.match import LabelMatcher, MatcherError, MatchOp, matchers_from_mapping, parse_matcher
from rules.model import GROUP_KEY_LABEL, RECEIVER_LABEL, SOURCE_LABEL
from rules.ruleset import Matcher

LABELS = {"alertname": "HostDown", "instance": "db1:9100", "team": "", "note": 'say "hi"\\'}


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('severity="critical"', "severity", MatchOp.EQUAL, "critical"),
        ('severity!="critical"', "severity", MatchOp.NOT_EQUAL, "critical"),
        ('severity=~"critical|major"', "severity", MatchOp.REGEX, "critical|major"),
        ('severity!~"critical|major"', "severity", MatchOp.NOT_REGEX, "critical|major"),
        ("severity=critical", "severity", MatchOp.EQUAL, "critical"),
        ("severity!=critical", "severity", MatchOp.NOT_EQUAL, "critical"),
        ("severity=~crit.*", "severity", MatchOp.REGEX, "crit.*"),
        ("severity!~crit.*", "severity", MatchOp.NOT_REGEX, "crit.*"),
        ('  severity  =~  "a b"  ', "severity", MatchOp.REGEX, "a b"),
        ("team=", "team", MatchOp.EQUAL, ""),
        ('team=""', "team", MatchOp.EQUAL, ""),
        ('note="say \\"hi\\""', "note", MatchOp.EQUAL, 'say "hi"'),
        ('path="C:\\\\temp"', "path", MatchOp.EQUAL, "C:\\temp"),
        ('path="ends with \\\\"', "path", MatchOp.EQUAL, "ends with \\"),
        ('msg="line\\nbreak"', "msg", MatchOp.EQUAL, "line\nbreak"),
        ('instance=~"db\\d+:9100"', "instance", MatchOp.REGEX, "db\\d+:9100"),
        ('url="a=b!=c=~d"', "url", MatchOp.EQUAL, "a=b!=c=~d"),
        ("url=a=b", "url", MatchOp.EQUAL, "a=b"),
        ('op="==x"', "op", MatchOp.EQUAL, "==x"),
        ('__source__="prometheus"', SOURCE_LABEL, MatchOp.EQUAL, "prometheus"),
        ('__group_key__!=""', GROUP_KEY_LABEL, MatchOp.NOT_EQUAL, ""),
        ("_x9=1", "_x9", MatchOp.EQUAL, "1"),
    ],
)
def test_parse(text: str, name: str, op: MatchOp, value: str) -> None:
    assert parse_matcher(text) == LabelMatcher(name, op, value)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="HostDown"', LABELS, True),
        ('alertname="hostdown"', LABELS, False),
        ('alertname!="HostDown"', LABELS, False),
        ('alertname!="Other"', LABELS, True),
        ('alertname=~"Host.*"', LABELS, True),
        ('alertname!~"Host.*"', LABELS, False),
        # Regexes are anchored at both ends, like Alertmanager's ^(?:re)$.
        ('alertname=~"Host"', LABELS, False),
        ('alertname=~"Down"', LABELS, False),
        ('alertname=~".*Down"', LABELS, True),
        ('alertname!~"Host"', LABELS, True),
        ('alertname=~"Host|Other"', LABELS, False),
        ('alertname=~"Other|HostDown"', LABELS, True),
        ('alertname=~"HostDown"', {"alertname": "HostDown\n"}, False),
        ('instance=~"db\\d+:9100"', LABELS, True),
        ('instance=~"db\\d+"', LABELS, False),
        # A missing label equals the empty string.
        ('missing=""', LABELS, True),
        ('missing!=""', LABELS, False),
        ('missing="x"', LABELS, False),
        ('missing!="x"', LABELS, True),
        ('missing=~".*"', LABELS, True),
        ('missing=~".+"', LABELS, False),
        ('missing!~".+"', LABELS, True),
        ('missing!~".*"', LABELS, False),
        # A present but empty label is the same as a missing one.
        ('team=""', LABELS, True),
        ('team!=""', LABELS, False),
        ('note="say \\"hi\\"\\\\"', LABELS, True),
        ('alertname=""', {}, True),
        ('alertname!~""', {}, False),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("severity=critical", 'severity="critical"'),
        (' a != "b" ', 'a!="b"'),
        ("a=~x|y", 'a=~"x|y"'),
        ("a!~x", 'a!~"x"'),
        ('a="q\\"uote"', 'a="q\\"uote"'),
        ('a="back\\\\slash"', 'a="back\\\\slash"'),
        ('a="new\\nline"', 'a="new\\nline"'),
        ('a=~"\\d+"', 'a=~"\\\\d+"'),
        ("a=", 'a=""'),
    ],
)
def test_str_is_canonical_and_round_trips(text: str, canonical: str) -> None:
    matcher = parse_matcher(text)
    assert str(matcher) == canonical
    assert parse_matcher(str(matcher)) == matcher


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected <label><op><value>"),
        ("severity", "expected <label><op><value>"),
        ("severity critical", "expected <label><op><value>"),
        ("severity==critical", "unquoted value '=critical'"),
        ("severity!=~crit", "unquoted value '~crit'"),
        ('="x"', "missing label name"),
        ('!~"x"', "missing label name"),
        ('1abc="x"', "invalid label name '1abc'"),
        ('foo-bar="x"', "invalid label name 'foo-bar'"),
        ('foo.bar="x"', "invalid label name 'foo.bar'"),
        ('"foo"="x"', "expected <label><op><value>"),
        ('a="x', "closing double quote"),
        ('a="', "closing double quote"),
        ('a="x\\"', "closing double quote"),
        ('a="x" y', "closing double quote"),
        ('a="x"y"', "unescaped double quote"),
        ('a=x"y', "unescaped double quote"),
        ('a=~"("', "invalid regular expression '('"),
        ('a=~"a)|(b"', "invalid regular expression"),
        ('a!~"[z-a]"', "invalid regular expression"),
    ],
)
def test_invalid(text: str, reason: str) -> None:
    with pytest.raises(MatcherError, match="invalid matcher") as info:
        parse_matcher(text)
    assert reason in str(info.value)


def test_matcher_error_is_a_value_error() -> None:
    assert issubclass(MatcherError, ValueError)


def test_constructor_validates_name_and_regex() -> None:
    with pytest.raises(MatcherError, match="invalid label name"):
        LabelMatcher("bad-name", MatchOp.EQUAL, "x")
    with pytest.raises(MatcherError, match="invalid regular expression"):
        LabelMatcher("a", MatchOp.NOT_REGEX, "(")
    # A regex-looking value is only a regex for the regex operators.
    assert LabelMatcher("a", MatchOp.EQUAL, "(").matches({"a": "("})


def test_equal_matchers_are_equal_and_hashable() -> None:
    first, second = parse_matcher('a=~"x.*"'), parse_matcher("a =~ x.*")
    assert first == second
    assert len({first, second}) == 1
    assert parse_matcher("a=x") != parse_matcher('a=~"x"')


def test_matchers_from_mapping() -> None:
    matchers = matchers_from_mapping({"alertname": "HostDown", SOURCE_LABEL: "prometheus"})
    assert matchers == (
        LabelMatcher("alertname", MatchOp.EQUAL, "HostDown"),
        LabelMatcher(SOURCE_LABEL, MatchOp.EQUAL, "prometheus"),
    )
    assert all(m.matches({"alertname": "HostDown", SOURCE_LABEL: "prometheus"}) for m in matchers)
    assert matchers_from_mapping({}) == ()
    # The shorthand is equality, never a regex.
    assert not matchers_from_mapping({"alertname": "Host.*"})[0].matches(LABELS)


def test_mapping_with_bad_name_is_refused() -> None:
    with pytest.raises(MatcherError, match="invalid label name"):
        matchers_from_mapping({"bad-name": "x"})


def test_satisfies_the_ruleset_protocol() -> None:
    matcher: Matcher = parse_matcher(f'{RECEIVER_LABEL}="team-a"')
    assert matcher.name == RECEIVER_LABEL
    assert matcher.matches({RECEIVER_LABEL: "team-a"})
