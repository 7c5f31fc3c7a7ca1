"""One language at a time: the half of a two-language server message, or of a label written
"中文 English" in one string, that the page wants."""

import pytest

from crm_bridge.web.language import EN, ZH, label_half, one_language


@pytest.mark.parametrize(
    ("message", "zh", "en"),
    [
        ("请填写号码 / Enter a number", "请填写号码", "Enter a number"),
        ("日期无效：2026/13/01 / Not a date: 2026/13/01", "日期无效：2026/13/01",
         "Not a date: 2026/13/01"),  # fmt: skip
        ("找不到张三 / No customer named 张三", "找不到张三", "No customer named 张三"),
        ("日期应为 YYYY-MM-DD（1900 至 9000 年）/ Dates are YYYY-MM-DD",
         "日期应为 YYYY-MM-DD（1900 至 9000 年）", "Dates are YYYY-MM-DD"),  # fmt: skip
        ("队列 support 不存在 / \"support\" is no queue", "队列 support 不存在",
         '"support" is no queue'),  # fmt: skip
    ],
)
def test_a_two_language_message_gives_each_page_its_half(message, zh, en) -> None:
    assert one_language(message, ZH) == zh
    assert one_language(message, EN) == en


@pytest.mark.parametrize(
    "message", ["and/or / either", "张三 / 李四", "A / B", "no slash here", "价格 / ¥5", ""]
)
def test_text_that_is_not_a_two_language_message_is_left_whole(message) -> None:
    assert one_language(message, ZH) == message
    assert one_language(message, EN) == message

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
