"""Prompt concatenation: numbers, money, dates and digits as the pieces the manifest names, in Chinese and English."""

from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctid.ivr import say

ZH = dict(zip("零一二三四五六七八九", range(10), strict=True))
ZH_WORDS = {**{f"num-{n}": ch for ch, n in ZH.items()}, "num-10": "十", "num-100": "百", "num-1000": "千",
            "num-10000": "万", "num-100000000": "亿", "num-1000000000000": "万亿",
            "money-yuan": "元", "money-jiao": "角", "money-fen": "分",
            "money-zheng": "整", "date-year": "年", "date-month": "月", "date-day": "日", "minus": "负",
            "point": "点", "percent": "百分之"}


def zh(pieces):
    return "".join(ZH_WORDS[p] for p in pieces)


def en(pieces):
    return " ".join(p.removeprefix("num-") for p in pieces)


@pytest.mark.parametrize("value, text", [
    (0, "零"), (7, "七"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"), (110, "一百一十"),
    (1010, "一千零一十"), (1203, "一千二百零三"), (10005, "一万零五"), (10500, "一万零五百"), (15000, "一万五千"),
    (100010, "十万零一十"), (100000001, "一亿零一"), (100010000, "一亿零一万"), (110000000, "一亿一千万"),
    (-3, "负三"),
])
def test_chinese_numbers(value, text):
    """Chinese numbers group by 万 and 亿, say one 零 for a run of zeros, and 十 alone at the front."""
    assert zh(say.number(value, "zh")) == text


@pytest.mark.parametrize("fen, text", [
    (0, "零元"), (5, "五分"), (50, "五角"), (1200, "十二元整"), (1250, "十二元五角"), (1205, "十二元零五分"),
    (120_350, "一千二百零三元五角"), (2_588_000_000, "二千五百八十八万元整"),
])
def test_chinese_money(fen, text):
    """Amounts in fen are said as 元, 角 and 分 (整 when there is no change)."""
    assert zh(say.money(fen, "zh")) == text


@pytest.mark.parametrize("value, words", [
    (0, "0"), (13, "13"), (45, "40 5"), (100, "1 hundred"), (1203, "1 thousand 2 hundred and 3"),
    (1050, "1 thousand and 50"), (2_000_001, "2 million and 1"),
])
def test_english_numbers(value, words):
    """English numbers are British: 'one thousand two hundred and three'."""
    assert en(say.number(value, "en")) == words


def test_english_money_and_dates():
    """'one thousand two hundred and three yuan fifty'; 'March fifth, twenty twenty-six'; 'fifty fen'."""
    assert en(say.money(120_350, "en")) == "1 thousand 2 hundred and 3 money-yuan 50"
    assert en(say.money(50, "en")) == "50 money-fen"
    assert say.say_date(date(2026, 3, 5), "en") == ["month-3", "ord-5", "num-20", "num-20", "num-6"]
    assert say.say_date(datetime(2005, 12, 31, 9, 30), "en") == ["month-12", "ord-31", "num-2", "num-thousand",
                                                                  "and", "num-5"]


def test_chinese_dates_digits_and_rates():
    """Years digit by digit, 年月日; digits one by one; rates as 百分之 and decimals."""
    assert zh(say.say_date(date(2026, 3, 5), "zh")) == "二零二六年三月五日"
    assert zh(say.digits("6222 1234", "zh")) == "六二二二一二三四"
    assert zh(say.percent(Decimal("1.450"), "zh")) == "百分之一点四五"
    assert say.percent(Decimal("3"), "en") == ["num-3", "percent"]
    assert zh(say.decimal(Decimal("718.5000"), "zh")) == "七百一十八点五"


def test_unknown_language_is_refused():
    """Only languages with number pieces can be spoken."""
    with pytest.raises(ValueError, match="no number pieces"):
        say.number(1, "fr")


@given(st.integers(min_value=0, max_value=10**15 - 1), st.sampled_from(say.LANGUAGES))
def test_every_piece_is_in_the_language_set(value, language):
    """Whatever the number, every piece produced is one the manifest must provide for that language."""
    pieces = say.number(value, language) + say.money(value, language)
    assert set(pieces) <= say.PIECES[language]
    if language == "zh":
        text = zh(say.number(value, "zh"))
        assert "零零" not in text and (value == 0 or not text.endswith("零"))
