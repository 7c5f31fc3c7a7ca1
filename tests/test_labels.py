"""Labels written "中文 English" in one string: the half a page's language wants."""

from __future__ import annotations

import pytest

from crm_bridge.web.labels import label_half
from crm_bridge.web.language import EN, ZH


@pytest.mark.parametrize(
    ("label", "zh", "en"),
    [
        ("接通率 Answer rate", "接通率", "Answer rate"),
        ("平均应答速度 ASA (s)", "平均应答速度", "ASA (s)"),
        ("登录时长(秒) Logged in (s)", "登录时长(秒)", "Logged in (s)"),
        ("平均得分 Average score (/100)", "平均得分", "Average score (/100)"),
        ("非常不满意 Very dissatisfied", "非常不满意", "Very dissatisfied"),
    ],
)
def test_a_label_has_a_chinese_and_an_english_half(label, zh, en):
    assert (label_half(label, ZH), label_half(label, EN)) == (zh, en)


@pytest.mark.parametrize("text", ["support", "张三", "Queue (x) Name", "1001 王伟", ""])
def test_text_without_both_halves_is_unchanged(text):
    assert label_half(text, ZH) == label_half(text, EN) == text
