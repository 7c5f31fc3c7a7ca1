"""One language at a time: the half of a two-language server message the page wants."""

import pytest

from crm_bridge.web.language import EN, ZH, one_language


@pytest.mark.parametrize(
    ("message", "zh", "en"),
    [
        ("请填写号码 / Enter a number", "请填写号码", "Enter a number"),
        ("日期无效：2026/13/01 / Not a date: 2026/13/01", "日期无效：2026/13/01",
         "Not a date: 2026/13/01"),  # fmt: skip
        ("找不到张三 / No customer named 张三", "找不到张三", "No customer named 张三"),
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
