"""Schedule validation and date generation (Interval, Cron, RRule) incl. DST changes."""

from __future__ import annotations

import datetime as dt

import pytest

from db import schedules as sched


def utc(*args):
    return dt.datetime(*args)


def test_interval_dates_step_from_anchor():
    s = sched.normalize({"interval": 3600, "anchor_date": "2026-01-01T00:30:00Z"})
    assert s == {"interval": 3600.0, "anchor_date": "2026-01-01T00:30:00Z", "timezone": "UTC"}
    got = sched.dates(s, utc(2026, 3, 1, 10, 0), utc(2026, 3, 1, 13, 0), 100)
    assert got == [utc(2026, 3, 1, 10, 30), utc(2026, 3, 1, 11, 30), utc(2026, 3, 1, 12, 30)]


def test_daily_interval_keeps_wall_clock_across_dst():
    s = sched.normalize({"interval": 86400, "anchor_date": "2026-03-01T08:00:00Z", "timezone": "Europe/Berlin"})
    got = sched.dates(s, utc(2026, 3, 27, 0, 0), utc(2026, 3, 31, 0, 0), 10)
    # 09:00 Berlin: CET (UTC+1) until 29 March, CEST (UTC+2) after.
    assert got == [utc(2026, 3, 27, 8), utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]


def test_hourly_interval_is_absolute_time_across_dst():
    s = sched.normalize({"interval": 3600, "anchor_date": "2026-03-29T00:00:00Z", "timezone": "Europe/Berlin"})
    got = sched.dates(s, utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 3, 0), 10)
    assert got == [utc(2026, 3, 29, h) for h in range(4)]


def test_cron_in_time_zone_across_dst():
    s = sched.normalize({"cron": "0 9 * * *", "timezone": "America/New_York"})
    assert s == {"cron": "0 9 * * *", "timezone": "America/New_York", "day_or": True}
    got = sched.dates(s, utc(2026, 3, 7, 0), utc(2026, 3, 10, 0), 10)
    assert got == [utc(2026, 3, 7, 14), utc(2026, 3, 8, 13), utc(2026, 3, 9, 13)]


def test_cron_start_is_inclusive_and_utc_default():
    s = sched.normalize({"cron": "*/15 * * * *"})
    got = sched.dates(s, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 40), 10)
    assert got == [utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30)]


def test_cron_day_or_false_means_and():
    # The 1st-7th of the month AND a Monday: the first Monday of each month.
    s_and = sched.normalize({"cron": "0 0 1-7 * 1", "day_or": False})
    got = sched.dates(s_and, utc(2026, 1, 1), utc(2026, 4, 1), 10)
    assert [d.day for d in got] == [5, 2, 2]
    s_or = sched.normalize({"cron": "0 0 1-7 * 1"})
    assert len(sched.dates(s_or, utc(2026, 1, 1), utc(2026, 2, 1), 100)) > 7


def test_rrule_with_time_zone():
    s = sched.normalize({"rrule": "DTSTART:20260101T090000\nRRULE:FREQ=DAILY;COUNT=100", "timezone": "Europe/Berlin"})
    got = sched.dates(s, utc(2026, 3, 28), utc(2026, 3, 31), 10)
    assert got == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]


def test_rrule_without_dtstart_uses_prefect_anchor():
    s = sched.normalize({"rrule": "FREQ=HOURLY;BYMINUTE=30"})
    got = sched.dates(s, utc(2026, 5, 1, 0, 0), utc(2026, 5, 1, 2, 0), 10)
    assert got == [utc(2026, 5, 1, 0, 30), utc(2026, 5, 1, 1, 30)]


@pytest.mark.parametrize(
    "schedule, field",
    [
        ({"cron": "* * * * * *"}, "schedule.cron"),
        ({"cron": "not a cron"}, "schedule.cron"),
        ({"cron": "H * * * *"}, "schedule.cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "schedule.timezone"),
        ({"interval": 0}, "schedule.interval"),
        ({"interval": -5}, "schedule.interval"),
        ({"interval": "soon"}, "schedule.interval"),
        ({"interval": 60, "anchor_date": "yesterday"}, "schedule.anchor_date"),
        ({"rrule": "FREQ=SOMETIMES"}, "schedule.rrule"),
        ({"rrule": "FREQ=DAILY;" + "BYHOUR=1;" * 1000}, "schedule.rrule"),
        ({"interval": 60, "cron": "* * * * *"}, "schedule.cron"),
        ({}, "schedule"),
        ("daily", "schedule"),
    ],
)
def test_bad_schedules_name_the_field(schedule, field):
    with pytest.raises(sched.ScheduleError) as info:
        sched.normalize(schedule)
    assert info.value.field == field


def test_interval_grid_extends_before_a_future_anchor():
    s = sched.normalize({"interval": 600, "anchor_date": "2030-01-01T00:05:00Z"})
    got = sched.dates(s, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 20), 10)
    assert got == [utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 15)]


def test_sub_hourly_rrule_from_the_implicit_anchor_is_fast_and_on_grid():
    import time

    s = sched.normalize({"rrule": "FREQ=SECONDLY;INTERVAL=30", "timezone": "Europe/Berlin"})
    assert s["rrule"].startswith("DTSTART:20200101T000000\n")
    started = time.perf_counter()
    got = sched.dates(s, utc(2026, 11, 24, 22, 0, 10), utc(2026, 11, 24, 23, 0), 3)
    assert time.perf_counter() - started < 0.5
    assert got == [utc(2026, 11, 24, 22, 0, 30), utc(2026, 11, 24, 22, 1), utc(2026, 11, 24, 22, 1, 30)]
