"""Route rules (AC-5): the rules file, its validation and the evaluator — pure, no sockets, time passed in."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctid.routeload import load_routes, parse_routes
from ctid.routing import STATES, CallFacts, Route, RouteError, RouteTable

SH = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC
QUEUES = {"general", "cards", "vip"}
ROOT = Path(__file__).resolve().parent.parent
HEAD = """
timezone = "Asia/Shanghai"

[calendars.cn]
holidays = ["2026-10-01..2026-10-07", 2026-01-01]
workdays = ["2026-09-20", 2026-10-10]

[schedules.office]
hours = ["mon-fri 08:30-17:30", "sat 09:00-12:00"]
calendar = "cn"

[schedules.night]
hours = ["fri 22:00-06:00", "sun 23:00-01:00"]
"""
FALLBACK = """
[[rules]]
name = "default"
queue = "general"
"""


def table(rules: str, flows: set[str] | None = None, head: str = HEAD) -> RouteTable:
    """The table made of ``HEAD``, ``rules`` and the ``FALLBACK`` rule."""
    return parse_routes(head + rules + FALLBACK, "routes.toml", QUEUES, flows)


def at(day: str, clock: str = "10:00", tz: dt.tzinfo = SH) -> dt.datetime:
    """An aware datetime from ``YYYY-MM-DD`` and ``HH:MM[:SS]`` in ``tz``."""
    return dt.datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=tz)


def target(routes: RouteTable, now: dt.datetime, caller: str = "13800000000", called: str = "95566",
           state: str = "arrival", **data: str) -> str | None:
    """``kind:target`` of the route a call gets, or None."""
    route = routes.route(CallFacts(caller, called, data), now, state)
    return None if route is None else f"{route.kind}:{route.target}"


TUESDAY, FRIDAY, SATURDAY, SUNDAY = "2026-06-09", "2026-06-12", "2026-06-13", "2026-06-14"


# -- conditions -------------------------------------------------------------------------------------------


def test_caller_exact_and_prefix_in_national_form():
    """主叫路由: a caller matches an exact number or a ``prefix*``, written with or without +86."""
    routes = table("""
[[rules]]
name = "vip"
caller = ["13900000001", "1391*", "008613700000000"]
queue = "vip"
""")
    now = at(TUESDAY)
    assert target(routes, now, caller="13900000001") == "queue:vip"
    assert target(routes, now, caller="13700000000") == "queue:vip"
    assert target(routes, now, caller="+86 139 1234 5678") == "queue:vip"
    assert target(routes, now, caller="13900000002") == "queue:general"
    assert target(routes, now, caller="") == "queue:general"


def test_called_number_list_and_prefix():
    """被叫路由: the DNIS is compared with a list of numbers and prefixes; a single string is a list of one."""
    routes = table("""
[[rules]]
name = "cards"
called = ["95566", "4008*"]
queue = "cards"

[[rules]]
name = "one"
called = "95588"
queue = "vip"
""")
    now = at(TUESDAY)
    assert target(routes, now, called="95566") == "queue:cards"
    assert target(routes, now, called="4008205566") == "queue:cards"
    assert target(routes, now, called="95588") == "queue:vip"
    assert target(routes, now, called="955661") == "queue:general"


def test_business_hours_start_inclusive_end_exclusive():
    """作息时间路由: 08:30 is open, 08:29:59 is not; 17:29:59 is open, 17:30 is not."""
    routes = table("""
[[rules]]
name = "open"
hours = "office"
queue = "cards"
""")
    assert target(routes, at(TUESDAY, "08:29:59")) == "queue:general"
    assert target(routes, at(TUESDAY, "08:30")) == "queue:cards"
    assert target(routes, at(TUESDAY, "17:29:59")) == "queue:cards"
    assert target(routes, at(TUESDAY, "17:30")) == "queue:general"
    assert target(routes, at(SATURDAY, "11:59")) == "queue:cards"
    assert target(routes, at(SATURDAY, "12:00")) == "queue:general"
    assert target(routes, at(SUNDAY, "10:00")) == "queue:general"


def test_range_past_midnight_runs_into_the_next_day():
    """``fri 22:00-06:00`` covers Friday 22:00 to Saturday 05:59; ``sun 23:00-01:00`` wraps into Monday."""
    routes = table("""
[[rules]]
name = "night"
hours = "night"
ivr = "night-service"
""")
    assert target(routes, at(FRIDAY, "21:59")) == "queue:general"
    assert target(routes, at(FRIDAY, "22:00")) == "ivr:night-service"
    assert target(routes, at(SATURDAY, "05:59")) == "ivr:night-service"
    assert target(routes, at(SATURDAY, "06:00")) == "queue:general"
    assert target(routes, at("2026-06-11", "23:00")) == "queue:general"
    assert target(routes, at(SUNDAY, "23:30")) == "ivr:night-service"
    assert target(routes, at("2026-06-15", "00:59")) == "ivr:night-service"
    assert target(routes, at("2026-06-15", "01:00")) == "queue:general"


def test_outside_hours_with_bang():
    """``hours = "!office"`` matches outside the schedule's hours."""
    routes = table("""
[[rules]]
name = "closed"
hours = "!office"
ivr = "closed"
""")
    assert target(routes, at(TUESDAY, "10:00")) == "queue:general"
    assert target(routes, at(TUESDAY, "18:00")) == "ivr:closed"


def test_holiday_condition_and_closed_schedule_on_holidays():
    """节假日路由: ``holiday = true`` matches listed dates and ranges; its schedule is closed then."""
    routes = table("""
[[rules]]
name = "holiday"
holiday = true
ivr = "holiday-greeting"

[[rules]]
name = "open"
hours = "office"
holiday = false
queue = "cards"
""")
    assert target(routes, at("2026-10-01")) == "ivr:holiday-greeting"
    assert target(routes, at("2026-10-07", "23:59")) == "ivr:holiday-greeting"
    assert target(routes, at("2026-01-01")) == "ivr:holiday-greeting"
    assert target(routes, at("2026-10-08")) == "queue:cards"
    assert not routes.schedules["office"].is_open(at("2026-10-02"))


def test_make_up_working_saturday_keeps_monday_hours():
    """调休: a make-up working Saturday is open with Monday's hours; an ordinary Saturday afternoon is closed."""
    routes = table("""
[[rules]]
name = "open"
hours = "office"
queue = "cards"
""")
    assert target(routes, at("2026-10-10", "15:00")) == "queue:cards"
    assert target(routes, at("2026-10-10", "17:30")) == "queue:general"
    assert target(routes, at("2026-10-17", "15:00")) == "queue:general"
    assert target(routes, at("2026-09-20", "09:00")) == "queue:cards"


def test_time_zone_of_the_file_applies_to_a_utc_now():
    """An aware UTC ``now`` is read in Asia/Shanghai: 02:00Z is 10:00 there, 09:30Z is 17:30 (closed)."""
    routes = table("""
[[rules]]
name = "open"
hours = "office"
queue = "cards"
""")
    assert target(routes, at(TUESDAY, "02:00", UTC)) == "queue:cards"
    assert target(routes, at(TUESDAY, "09:30", UTC)) == "queue:general"
    assert target(routes, at("2026-06-08", "23:00", UTC)) == "queue:general"
    assert target(routes, at("2026-06-09", "00:30", UTC)) == "queue:cards"
    new_york = ZoneInfo("America/New_York")
    assert target(routes, at("2026-06-08", "20:30", new_york)) == "queue:cards"
    assert target(routes, at("2026-06-09", "06:00", new_york)) == "queue:general"


def test_ivr_data_menu_and_data_tables():
    """``menu`` reads CTID_MENU; ``data`` wants every listed key to hold one of its values."""
    routes = table("""
[[rules]]
name = "loss"
menu = ["loss-report", "freeze"]
queue = "cards"

[[rules]]
name = "verified-vip"
data = { CTID_VERIFIED = "1", CTID_CLASS = ["gold", "platinum"] }
queue = "vip"
""")
    now = at(TUESDAY)
    assert target(routes, now, CTID_MENU="loss-report") == "queue:cards"
    assert target(routes, now, CTID_MENU="freeze") == "queue:cards"
    assert target(routes, now, CTID_MENU="balance") == "queue:general"
    assert target(routes, now, CTID_VERIFIED="1", CTID_CLASS="gold") == "queue:vip"
    assert target(routes, now, CTID_VERIFIED="0", CTID_CLASS="gold") == "queue:general"
    assert target(routes, now, CTID_CLASS="gold") == "queue:general"
    odd = routes.route(CallFacts("1", "2", {"CTID_MENU": ["loss-report"]}), now)  # type: ignore[dict-item]
    assert odd is not None and odd.rule == "default"


def test_state_specific_rules():
    """遇忙/无人应答/溢出: all_busy → voicemail, no_answer → another queue, overflow → external; else None."""
    routes = table("""
[[rules]]
name = "busy"
state = "all_busy"
voicemail = "general-box"

[[rules]]
name = "no-answer"
state = "no_answer"
queue = "cards"
priority = 5

[[rules]]
name = "overflow-vip"
state = "overflow"
caller = "139*"
external = "+862168881234"
""")
    now = at(TUESDAY)
    assert target(routes, now, state="arrival") == "queue:general"
    assert target(routes, now, state="all_busy") == "voicemail:general-box"
    assert routes.route(CallFacts("1", "95566"), now, "no_answer") == Route("no-answer", "queue", "cards", 5)
    assert target(routes, now, caller="13912345678", state="overflow") == "external:+862168881234"
    assert target(routes, now, caller="13812345678", state="overflow") is None


def test_every_target_kind_with_priority_and_attached_data():
    """queue (with priority and attach), ivr, voicemail and external targets give the matching Route."""
    routes = table("""
[[rules]]
name = "q"
menu = "q"
queue = "vip"
priority = 10
attach = { CTID_SEGMENT = "vip", CTID_NOTE = "from rules" }

[[rules]]
name = "i"
menu = "i"
ivr = "pin-check"
attach = { CTID_NEXT = "agent" }

[[rules]]
name = "v"
menu = "v"
voicemail = "cards-box"

[[rules]]
name = "x"
menu = "x"
external = "4008205566"
""")
    now = at(TUESDAY)
    route = routes.route(CallFacts("1", "2", {"CTID_MENU": "q"}), now)
    assert route == Route("q", "queue", "vip", 10, {"CTID_SEGMENT": "vip", "CTID_NOTE": "from rules"})
    assert str(route) == "queue vip priority 10 with CTID_SEGMENT=vip CTID_NOTE=from rules"
    assert routes.route(CallFacts("1", "2", {"CTID_MENU": "i"}), now) == Route("i", "ivr", "pin-check", None,
                                                                              {"CTID_NEXT": "agent"})
    assert target(routes, now, CTID_MENU="v") == "voicemail:cards-box"
    assert target(routes, now, CTID_MENU="x") == "external:4008205566"
    fallback = routes.route(CallFacts(), now)
    assert fallback == Route("default", "queue", "general") and fallback.priority is None and not fallback.data


def test_first_match_wins_in_file_order():
    """Two rules that both match: the one written first answers; conditions of one rule are ANDed."""
    routes = table("""
[[rules]]
name = "vip-in-hours"
caller = "139*"
hours = "office"
queue = "vip"

[[rules]]
name = "mobile"
caller = "13*"
queue = "cards"
""")
    assert target(routes, at(TUESDAY), caller="13912345678") == "queue:vip"
    assert target(routes, at(SUNDAY), caller="13912345678") == "queue:cards"
    assert target(routes, at(TUESDAY), caller="13812345678") == "queue:cards"


def test_explain_names_the_match_and_why_earlier_rules_did_not():
    """explain: a header, one line per earlier rule with the failing conditions, then the matching rule."""
    routes = table("""
[[rules]]
name = "vip"
caller = "139*"
hours = "office"
queue = "vip"

[[rules]]
name = "all-busy"
state = "all_busy"
voicemail = "box"
""")
    lines = routes.explain(CallFacts("13812345678", "95566"), at("2026-10-01"))
    assert lines == [
        "arrival call from 13812345678 to 95566 at Thu 2026-10-01 10:00 Asia/Shanghai",
        "rule 'vip' skipped: caller 13812345678 does not match 139*; "
        "Thu 2026-10-01 10:00 is outside the 'office' hours (a holiday in 'cn')",
        "rule 'default' matched: no conditions (fallback) -> queue general",
    ]
    assert routes.explain(CallFacts(), at(TUESDAY), "overflow")[-1] == "no rule for overflow matched"


def test_route_refuses_naive_times_and_unknown_states():
    """A naive ``now`` or an unknown state is a programming error: ValueError."""
    routes = table("")
    with pytest.raises(ValueError, match="timezone-aware"):
        routes.route(CallFacts(), dt.datetime(2026, 6, 9, 10))
    with pytest.raises(ValueError, match="unknown routing state"):
        routes.route(CallFacts(), at(TUESDAY), "queued")


# -- the loader -------------------------------------------------------------------------------------------

RULE = '\n[[rules]]\nname = "r"\n'
BAD_RULES = [
    (RULE + 'quue = "general"', "rule 'r': unknown key 'quue' (did you mean 'queue'?)"),
    (RULE + 'queue = "general"\nivr = "x"', "rule 'r': 2 targets (queue, ivr): give exactly one of"),
    (RULE + 'caller = "1*"', "rule 'r': no target: give exactly one of queue, ivr, voicemail, external"),
    (RULE + 'queue = "genral"', "rule 'r': queue: unknown queue 'genral' (queues: cards, general, vip)"),
    (RULE + 'hours = "ofice"\nqueue = "vip"', "rule 'r': hours: unknown schedule 'ofice' (schedules: night, office)"),
    (RULE + 'holiday = true\ncalendar = "us"\nqueue = "vip"', "rule 'r': calendar: unknown calendar 'us'"),
    (RULE + 'calendar = "cn"\nqueue = "vip"', "rule 'r': calendar: only used with holiday"),
    (RULE + 'holiday = "yes"\nqueue = "vip"', "rule 'r': holiday: expected true or false"),
    (RULE + 'state = "busy"\nqueue = "vip"', "rule 'r': state: unknown state 'busy' (one of arrival, all_busy"),
    (RULE + 'caller = ["13a*"]\nqueue = "vip"', "rule 'r': caller: '13a*' is not a number or a prefix"),
    (RULE + "called = []\nqueue = \"vip\"", "rule 'r': called: an empty list never matches"),
    (RULE + 'menu = "a"\ndata = { CTID_MENU = "b" }\nqueue = "vip"', "rule 'r': menu: data.CTID_MENU is set too"),
    (RULE + 'data = { "bad key" = "1" }\nqueue = "vip"', "rule 'r': data: 'bad key' is not a variable name"),
    (RULE + 'ivr = "closed"\npriority = 3', "rule 'r': priority: only for queue targets"),
    (RULE + 'queue = "vip"\npriority = -1', "rule 'r': priority: expected a whole number"),
    (RULE + 'external = "call me"', "rule 'r': external: 'call me' is not a phone number"),
    (RULE + 'queue = "vip"\nattach = { CTID_X = 1 }', "rule 'r': attach.CTID_X: expected text"),
    (RULE + 'ivr = "nope"', "rule 'r': ivr: unknown IVR flow 'nope' (flows: closed)"),
    ('\n[[rules]]\nqueue = "vip"', "rule #1: name: missing"),
    (RULE + 'menu = "a"\nqueue = "vip"' + RULE + 'menu = "b"\nqueue = "vip"', "rule 'r': name: used by an earlier"),
    ('\n[[rules]]\nname = "all"\nqueue = "vip"' + RULE + 'caller = "1*"\nqueue = "cards"',
     "rule 'r': never matches: the earlier rule 'all' takes every arrival call this one would"),
    ('\n[[rules]]\nname = "mobile"\ncaller = "13*"\nqueue = "vip"' + RULE + 'caller = ["1391*", "13800000000"]\n'
     'hours = "office"\nqueue = "cards"', "rule 'r': never matches: the earlier rule 'mobile' takes every"),
    ('\n[[rules]]\nname = "busy"\nstate = "all_busy"\nvoicemail = "a"' + RULE + 'state = "all_busy"\nvoicemail = "b"',
     "rule 'r': never matches: the earlier rule 'busy' takes every all_busy call"),
]


@pytest.mark.parametrize(("rules", "expected"), BAD_RULES)
def test_rule_errors_are_one_line_naming_file_and_rule(rules, expected):
    """Every rule problem raises RouteError: one line, ``FILE: rule 'NAME': problem``."""
    with pytest.raises(RouteError) as caught:
        table(rules, flows={"closed"})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("routes.toml: rule ")
    assert expected in message


BAD_FILES = [
    (HEAD.replace('timezone = "Asia/Shanghai"', ""), 'routes.toml: timezone: missing, e.g. timezone = "Asia/'),
    (HEAD.replace("Asia/Shanghai", "Asia/Shanghia"), "routes.toml: timezone: unknown time zone 'Asia/Shanghia'"),
    (HEAD.replace("timezone =", "time_zone = 1\ntimezone ="), "routes.toml: unknown key 'time_zone' (did you mean"),
    (HEAD.replace("08:30-17:30", "8:30-17:30"), "schedule 'office': hours: 'mon-fri 8:30-17:30': '8:30-17:30' is not"),
    (HEAD.replace("08:30-17:30", "08:30-25:00"), "schedule 'office': hours: 'mon-fri 08:30-25:00': '08:30-25:00' is"),
    (HEAD.replace("08:30-17:30", "08:30-08:30"), "schedule 'office': hours: 'mon-fri 08:30-08:30': '08:30-08:30' is"
                                                 " empty; write 00:00-24:00 for all day"),
    (HEAD.replace("mon-fri", "mon-fry"), "schedule 'office': hours: 'mon-fry 08:30-17:30': unknown day 'fry'"),
    (HEAD.replace('"sat 09:00-12:00"', '"fri 17:00-18:00"'),
     "schedule 'office': hours: 'mon-fri 08:30-17:30' and 'fri 17:00-18:00' overlap at fri 17:00"),
    (HEAD.replace('"sun 23:00-01:00"', '"mon 00:30-02:00", "sun 23:00-01:00"'),
     "schedule 'night': hours: 'sun 23:00-01:00' and 'mon 00:30-02:00' overlap at mon 00:30"),
    (HEAD.replace('calendar = "cn"', 'calendar = "us"'), "schedule 'office': calendar: unknown calendar 'us'"),
    (HEAD.replace("hours = [\"mon", "days = 1\nhours = [\"mon"), "schedule 'office': unknown key 'days'"),
    (HEAD.replace('"2026-09-20"', '"2026-09-31"'), "calendar 'cn': workdays: '2026-09-31' is not a date"),
    (HEAD.replace("2026-10-01..2026-10-07", "2026-10-07..2026-10-01"),
     "calendar 'cn': holidays: '2026-10-07..2026-10-01' ends before it starts"),
    (HEAD.replace("2026-01-01]", "2026-01-01, \"2026-10-03\"]"), "calendar 'cn': holidays: 2026-10-03 is listed twice"),
    (HEAD.replace('"2026-09-20"', '"2026-10-02"'),
     "calendar 'cn': 2026-10-02 is both a holiday and a make-up working day"),
    (HEAD.replace('"2026-09-20"', '"2026-09-22"'), "calendar 'cn': workdays: 2026-09-22 is a tue, already a working"),
    (HEAD.replace("workdays =", 'workdays_as = "monday"\nworkdays ='), "calendar 'cn': workdays_as: unknown day"),
    (HEAD + "\n[calendars.hk]\nholidays = []\n" + RULE + "holiday = true\nqueue = \"vip\"",
     "rule 'r': holiday: say which calendar, calendar = \"NAME\" (calendars: cn, hk)"),
    (HEAD + "\n[[rules]]\nname = \"x\"\nstate = \"all_busy\"\nqueue = \"vip\"\n" + RULE + 'caller = "1"\nqueue = "vip"',
     "routes.toml: rule 'r': no fallback for arrival calls: the last arrival rule must have no conditions"),
    (HEAD + '\n[[rules]]\nname = "x"\nstate = "all_busy"\nqueue = "vip"\n',
     "routes.toml: no fallback for arrival calls: the last arrival rule must have no conditions"),
    (HEAD, "routes.toml: no rules: add [[rules]] tables, the last with no conditions (the fallback)"),
    (HEAD + "\n[[rules]\n", "routes.toml: not valid TOML: "),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_file_errors_are_one_line_naming_file_and_place(text, expected):
    """Schedule, calendar and whole-file problems raise a one-line RouteError naming the file and the place."""
    with pytest.raises(RouteError) as caught:
        parse_routes(text, "routes.toml", QUEUES)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("routes.toml: ")
    assert expected in message


def test_load_routes_reports_unreadable_files(tmp_path):
    """A missing or non-UTF-8 file is one line naming it."""
    missing = tmp_path / "none.toml"
    with pytest.raises(RouteError, match=f"^{missing}: cannot read the rules file: "):
        load_routes(str(missing), QUEUES)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"timezone = \"\xff\"")
    with pytest.raises(RouteError, match=f"^{binary}: not UTF-8 text"):
        load_routes(str(binary), QUEUES)


def test_a_more_specific_rule_after_a_general_one_is_shadowed_but_not_the_reverse():
    """Shadowing follows coverage: '13*' before '139*' is an error; '139*' before '13*' is fine."""
    with pytest.raises(RouteError, match="never matches"):
        table('\n[[rules]]\nname = "a"\ncaller = "13*"\nqueue = "vip"\n[[rules]]\nname = "b"\ncaller = "139*"\n'
              'queue = "cards"\n')
    routes = table('\n[[rules]]\nname = "a"\ncaller = "139*"\nqueue = "vip"\n[[rules]]\nname = "b"\n'
                   'caller = "13*"\nqueue = "cards"\n')
    assert [rule.name for rule in routes.rules] == ["a", "b", "default"]


# -- the embedded default ---------------------------------------------------------------------------------


def test_embedded_routes_file_loads_and_routes_the_service_number():
    """conf/routes.toml (the simulator's): VIP callers get priority 10; everyone else the general queue, all week."""
    routes = load_routes(str(ROOT / "conf" / "routes.toml"), {"general"})
    assert target(routes, at(TUESDAY, "10:00")) == "queue:general"
    assert target(routes, at(SUNDAY, "10:00")) == "queue:general"
    assert target(routes, at("2026-10-01", "10:00")) == "queue:general"
    vip = routes.route(CallFacts("13900000001", "95566"), at(SUNDAY))
    assert vip is not None and (vip.kind, vip.target, vip.priority) == ("queue", "general", 10)
    assert vip.data == {"CTID_SEGMENT": "vip"}
    assert routes.calendars and routes.schedules


# -- properties -------------------------------------------------------------------------------------------

_conditions = st.fixed_dictionaries({}, optional={
    "caller": st.lists(st.sampled_from(["139*", "1390*", "13900000001", "021*", "0"]), min_size=1, max_size=3),
    "called": st.lists(st.sampled_from(["95566", "9556*", "4008*"]), min_size=1, max_size=2),
    "hours": st.sampled_from(["office", "!office", "night", "!night"]),
    "holiday": st.booleans(),
    "menu": st.sampled_from(["balance", "loss-report"]),
    "state": st.sampled_from(STATES),
})
_targets = st.sampled_from([{"queue": "general"}, {"queue": "vip", "priority": 3}, {"ivr": "closed"},
                            {"voicemail": "box"}, {"external": "4008205566"}])
_rules = st.lists(st.tuples(_conditions, _targets), max_size=8)
_numbers = st.one_of(st.text(max_size=14), st.from_regex(r"\+?(86)?1[3-9][0-9]{0,9}", fullmatch=True))
_calls = st.builds(CallFacts, _numbers, st.one_of(st.none(), _numbers, st.sampled_from(["95566", "4008205566"])),
                   st.dictionaries(st.sampled_from(["CTID_MENU", "CTID_X"]),
                                   st.one_of(st.text(max_size=5), st.sampled_from(["balance", "loss-report"]))))
_nows = st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(2100, 1, 1),
                     timezones=st.sampled_from([UTC, SH, ZoneInfo("America/New_York")]))


def _toml_rules(rules: list[tuple[dict, dict]]) -> str:
    """The ``[[rules]]`` tables for ``rules`` (conditions, target), named r0, r1, …"""
    out = []
    for index, (conditions, target) in enumerate(rules):
        out.append(f'\n[[rules]]\nname = "r{index}"')
        out.extend(f"{key} = {json.dumps(value)}" for key, value in {**conditions, **target}.items())
    return "\n".join(out) + "\n"


def _valid_table(rules: list[tuple[dict, dict]]) -> RouteTable:
    """The table of ``rules`` less those the loader finds shadowed (the only error these rules can have)."""
    rules = list(rules)
    while True:
        try:
            return table(_toml_rules(rules))
        except RouteError as e:
            found = re.fullmatch(r"routes\.toml: rule '(\w+)': never matches: the earlier rule 'r(\d+)' .*", str(e))
            assert found is not None, str(e)
            shadowed, earlier = found.groups()
            del rules[int(earlier if shadowed == "default" else shadowed[1:])]


@settings(max_examples=75, deadline=None)
@given(_rules, st.lists(st.tuples(_calls, _nows), min_size=1, max_size=4))
def test_valid_tables_always_route_arrival_calls_and_never_raise(rules, calls):
    """Any table the loader accepts answers every arrival call, and no state or explain ever raises."""
    routes = _valid_table(rules)
    for call, now in calls:
        assert isinstance(routes.route(call, now), Route)
        for state in STATES:
            routes.route(call, now, state)
        assert " matched: " in routes.explain(call, now)[-1]


_values = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.booleans(), st.dates(),
                    st.lists(st.text(max_size=6), max_size=3),
                    st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=4), st.integers()), max_size=2))
_any_rule = st.dictionaries(st.sampled_from(["name", "state", "caller", "called", "menu", "data", "hours", "holiday",
                                             "calendar", "queue", "ivr", "voicemail", "external", "priority",
                                             "attach", "bogus"]), _values, max_size=6)


def _toml_value(value: object) -> str:
    """A TOML inline value for the fuzzed rule bodies."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@settings(max_examples=75, deadline=None)
@given(st.lists(_any_rule, max_size=4))
def test_the_loader_only_ever_raises_route_errors(bodies):
    """Fuzzed rule tables either load or raise a one-line RouteError — never another exception."""
    text = HEAD + "".join("\n[[rules]]\n" + "\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in body.items())
                          for body in bodies) + "\n"
    try:
        parse_routes(text, "routes.toml", QUEUES)
    except RouteError as e:
        assert "\n" not in str(e) and str(e).startswith("routes.toml: ")
