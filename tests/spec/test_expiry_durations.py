"""`expire_after` durations: weeks as kube-janitor's TTLs have them, and hostile values."""

from __future__ import annotations

import pytest

from ansflow.spec.steps import MAX_EXPIRY_DAYS, K8sDeployConfig, expiry_seconds

WEEK = 7 * 86400


@pytest.mark.parametrize(("text", "seconds"), [
    ("2w", 2 * WEEK), ("1w", WEEK), ("1w2d", WEEK + 2 * 86400), ("1w1d1h1m1s", WEEK + 90061),
    (" 2w ", 2 * WEEK), ("2w 3d", 2 * WEEK + 3 * 86400), ("0w1s", 1), ("521w", 521 * WEEK),
    ("3600", 3600), (3600, 3600),
])
def test_weeks_and_the_other_units(text, seconds):
    assert expiry_seconds(text) == seconds


def test_a_step_takes_weeks():
    config = K8sDeployConfig(cluster="c", manifest="x", expire_after="2w")
    assert config.expire_after == "2w" and expiry_seconds(config.expire_after) == 2 * WEEK


@pytest.mark.parametrize("bad", [
    "w", "2W", "2weeks", "2d1w",  # units largest first, as kube-janitor (2d1w is no TTL there)
    "-2w", "+2w", "2.5w", "1e3w", "0x10w", "2w;rm -rf /", "$(id)w", "{{ 2 }}w2",
    "..", "2w\x00", "\x00", "２w", "٣w", "²", "2w\udcff", "", "   ", True, False, None,
    "9" * 41, "9" * 5000 + "w", "1" + "0" * 39,
])
def test_hostile_values_are_refused_as_no_duration(bad):
    with pytest.raises(ValueError, match="is not a duration"):
        expiry_seconds(bad)


@pytest.mark.parametrize("big", ["522w", "99999999999999999999w", "9999999999999999999999999d",
                                 10**30, "3651d"])
def test_overflowing_values_are_refused_by_the_ceiling(big):
    with pytest.raises(ValueError, match=f"at most {MAX_EXPIRY_DAYS}d"):
        expiry_seconds(big)


def test_zero_weeks_is_refused():
    with pytest.raises(ValueError, match="longer than 0"):
        expiry_seconds("0w")


def test_the_json_schema_pattern_takes_weeks():
    import re

    pattern = K8sDeployConfig.model_json_schema()["properties"]["expire_after"]
    pattern = next(p for p in [pattern.get("pattern")] + [
        a.get("pattern") for a in pattern.get("anyOf", [])] if p)
    assert re.search(pattern, "2w3d") and not re.search(pattern, "2y")
