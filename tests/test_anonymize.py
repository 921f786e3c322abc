"""PII placeholders: phones, e-mails, ID numbers, URLs, WeChat and QQ, in Chinese and English."""

from __future__ import annotations

import pytest

from empathy_rl.anonymize import PII_PATTERNS, anonymize, anonymize_record
from empathy_rl.data.records import CounselingRecord


@pytest.mark.parametrize(
    "text, expected",
    [
        # Chinese mobiles
        ("我的电话是13812345678，请联系", "我的电话是[PHONE]，请联系"),
        ("手机：+86 138 1234 5678", "手机：[PHONE]"),
        ("手机+86-139-1234-5678。", "手机[PHONE]。"),
        ("0086 15912345678", "[PHONE]"),
        ("电话：１３８１２３４５６７８。", "电话：[PHONE]。"),  # full-width digits
        # Chinese landlines
        ("座机010-12345678", "座机[PHONE]"),
        ("打0755-1234567或(021)87654321", "打[PHONE]或[PHONE]"),
        # US / international
        ("Call me at (555) 123-4567.", "Call me at [PHONE]."),
        ("or 555-123-4567 or 555.123.4567", "or [PHONE] or [PHONE]"),
        ("Text +1 555 123 4567 now", "Text [PHONE] now"),
        ("toll-free 1-800-555-1234", "toll-free [PHONE]"),
        ("London +44 20 7946 0958", "London [PHONE]"),
        # e-mail (before URL)
        ("write to john.doe+x@example.co.uk today", "write to [EMAIL] today"),
        ("邮箱foo_bar@163.com谢谢", "邮箱[EMAIL]谢谢"),
        ("me@www.example.com", "[EMAIL]"),
        ("QQ邮箱 12345678@qq.com", "QQ邮箱 [EMAIL]"),
        # ID numbers (before phones)
        ("身份证号110101199003071234，", "身份证号[ID_NUMBER]，"),
        ("ID 11010119900307123X.", "ID [ID_NUMBER]."),
        ("旧证110101900307123", "旧证[ID_NUMBER]"),
        # URLs: trailing punctuation stays
        ("see https://www.example.com/path?a=1.", "see [URL]."),
        ("visit www.foo.org, thanks", "visit [URL], thanks"),
        ("链接http://x.cn/a，好的", "链接[URL]，好的"),
        ("(HTTPS://Example.com/X)", "([URL])"),
        # WeChat: the keyword is kept, the ID replaced
        ("加我微信：wxid_abc123，", "加我微信：[WECHAT]，"),
        ("微信号 zhang_san88", "微信号 [WECHAT]"),
        ("V信: abcdef", "V信: [WECHAT]"),
        ("vx 13800001111", "vx [WECHAT]"),
        ("WeChat ID: john_doe.", "WeChat ID: [WECHAT]."),
        ("wx:lucky2020", "wx:[WECHAT]"),
        # QQ
        ("QQ：123456789", "QQ：[QQ]"),
        ("qq号是 10001", "qq号是 [QQ]"),
        ("扣扣 2233445566", "扣扣 [QQ]"),
    ],
)
def test_pii_is_replaced(text: str, expected: str) -> None:
    assert anonymize(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "我今年23岁，2019年开始工作，2020年辞职。",
        "I'm 23, born in 1998, and it is 10:30 now.",
        "Sleep 3.5 hours, pay 100000元, 5-6次 a week, 2019-2020, 2023-01-15.",
        "Order 12345, code 1234567, date 20190101.",
        "I use WeChat messages every day. 微信聊天很开心，QQ空间也常看。",
        "He is 15岁, the room is 1203, we met on 3月15日 at 8点.",
        "The score was 100 to 98; +5 points; 10% off.",
        "Call someone you trust.",
        "",
    ],
)
def test_ordinary_numbers_and_words_are_kept(text: str) -> None:
    assert anonymize(text) == text


def test_several_kinds_in_one_text() -> None:
    text = "我叫小王，电话13812345678，邮箱wang@example.com，微信：wang_88，主页 https://wang.example.com"
    out = anonymize(text)
    assert out == "我叫小王，电话[PHONE]，邮箱[EMAIL]，微信：[WECHAT]，主页 [URL]"
    assert anonymize(out) == out  # idempotent: placeholders are never re-matched


def test_digits_inside_longer_runs_are_not_cut() -> None:
    assert anonymize("serial 9913812345678123456789") == "serial 9913812345678123456789"


def test_record_fields_are_all_anonymized() -> None:
    record = CounselingRecord(
        id="x", source="s", language="zh", title="找我 13812345678", description="邮箱 a@b.com",
        query="找我 13812345678\n邮箱 a@b.com", answers=["请拨打 010-12345678", "ok"],
    )
    out = anonymize_record(record)
    assert (out.title, out.description) == ("找我 [PHONE]", "邮箱 [EMAIL]")
    assert out.query == "找我 [PHONE]\n邮箱 [EMAIL]"
    assert out.answers == ["请拨打 [PHONE]", "ok"]
    assert record.title == "找我 13812345678"  # the input is not modified


def test_patterns_are_documented_in_order() -> None:
    names = [p.name for p in PII_PATTERNS]
    assert names.index("email") < names.index("url")
    assert names.index("id_number") < names.index("phone_cn_mobile")
    assert names.index("bank_card") < names.index("phone_cn_mobile")  # grouped card digits look like phones
    assert names.index("zh_address") < names.index("zh_name") and names.index("en_school") < names.index("en_name")
    assert {p.placeholder for p in PII_PATTERNS} == {
        "[PHONE]", "[EMAIL]", "[ID_NUMBER]", "[URL]", "[WECHAT]", "[QQ]", "[PASSPORT]", "[ACCOUNT]", "[BANK_CARD]",
        "[NAME]", "[ADDRESS]", "[SCHOOL]", "[EMPLOYER]",
    }
    assert all(p.description for p in PII_PATTERNS)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("我叫张伟明，住在北京市朝阳区建国路88号阳光小区3号楼2单元501室。", "我叫[NAME]，住在[ADDRESS]。"),
        ("我在清华大学读书，之前在阿里巴巴集团实习。", "我在[SCHOOL]读书，之前在[EMPLOYER]实习。"),
        ("王芳老师说我男朋友刘洋不适合我", "[NAME]老师说我男朋友[NAME]不适合我"),
        ("My name is Emily Johnson and I live at 123 Maple Street, Springfield, IL 62704.", "My name is [NAME] and I live at [ADDRESS]."),
        ("I go to Lincoln High School and work at Starbucks.", "I go to [SCHOOL] and work at [STARBUCKS]".replace("[STARBUCKS]", "[EMPLOYER].")),
        ("I told my boyfriend Jake and Dr. Patel.", "I told my boyfriend [NAME] and Dr. [NAME]."),
        ("卡号6222 0212 3456 7890 123，护照E12345678", "卡号[ACCOUNT]，护照[PASSPORT]"),
        ("card 4111 1111 1111 1111 and SSN 123-45-6789", "card [BANK_CARD] and SSN [ID_NUMBER]"),
        ("my blog is medium.com/@me123 and 主页weibo.com/u/1234。", "my blog is [URL] and 主页[URL]。"),
    ],
)
def test_names_places_organisations_and_accounts(text: str, expected: str) -> None:
    assert anonymize(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "马上就要高考了，我在上大学，想去一家互联网公司。", "周末和朋友去了公园，心情好多了。", "Will you help me? May I ask something?",
        "我本来想考研，但是单位不同意。", "谢谢你的建议，我会试试。", "I moved to a new city and started college.",
    ],
)
def test_ordinary_words_are_not_names_or_places(text: str) -> None:
    assert anonymize(text) == text


def test_public_crisis_numbers_are_kept() -> None:
    text = "请拨打400-161-9995或010-82951332，也可以打12356；UK: Samaritans 116 123; US: 988."
    assert anonymize(text) == text


def test_planted_pii_corpus_is_removed() -> None:
    """>= 200 planted items per seed, both languages; docs/safety.md reports the per-kind rates."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from pii_corpus import generate, removal_rates

    pooled = []
    for seed in range(4):
        items = generate(320, seed)
        assert len(items) >= 200 and {i.language for i in items} == {"zh", "en"}
        rates = removal_rates(items)
        assert rates["all"] >= 0.98, (seed, rates)
        pooled += items
    assert removal_rates(pooled)["all"] >= 0.99
