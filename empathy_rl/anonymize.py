"""Replace personal identifiers in counseling text with placeholders, before anything is stored.

Help-seekers sometimes leave a phone number, an e-mail, a WeChat ID or even an ID-card number in
their post. Every record is passed through `anonymize` before it is written to disk, logged or
sampled into run outputs, so those never leave the raw source file.

Patterns are applied in the order of `PII_PATTERNS`, and the order matters:
e-mails before URLs (``me@www.x.com`` is an e-mail), URLs before numbers (a URL may hold digits),
ID-card numbers before phones (an 18-digit ID contains 11-digit runs that look like mobiles),
WeChat/QQ before phones (``微信 13812345678`` is the WeChat account). Placeholders contain no
digits, so a later pattern never re-matches an earlier replacement.

Matching runs on a copy of the text with full-width ASCII folded to half-width (``１３８`` -> ``138``,
``：`` -> ``:``); the fold maps one character to one character, so match positions in the copy are
positions in the original and the original characters around a match are kept untouched.

Ordinary numbers (ages, years such as 2019年, times, prices, short counts) are left alone: every
number pattern needs a phone-, ID- or account-like shape or an introducing keyword, and digit
runs are never cut out of a longer run of digits.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

# Full-width ASCII (U+FF01..U+FF5E) -> ASCII, ideographic space -> space: one character for one.
_FOLD = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")

_D = r"(?<![0-9])"  # no digit right before
_ND = r"(?![0-9])"  # no digit right after
_MMDD = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"  # month and day of a birth date


@dataclass(frozen=True)
class PiiPattern:
    """One kind of identifier: what it is, its placeholder, and how it is found."""

    name: str
    placeholder: str
    regex: re.Pattern[str]
    description: str
    group: str = "pii"  # the named group that is replaced (the keyword before an account ID is kept)
    accept: Optional[Callable[[re.Match[str]], bool]] = None  # extra check a match must pass


def _wechat_ok(match: re.Match[str]) -> bool:
    # Without an explicit separator ("微信：abc", "wechat id abc") a bare word after the keyword is
    # accepted only if it looks like an account (has a digit, '_' or '-'): "WeChat messages" is
    # not an ID, "微信 zhang_san88" is.
    if match.group("sep").strip():
        return True
    return re.search(r"[0-9_\-]", match.group("pii")) is not None


def _digits_between(low: int, high: int) -> Callable[[re.Match[str]], bool]:
    def accept(match: re.Match[str]) -> bool:
        return low <= sum(c.isdigit() for c in match.group("pii")) <= high

    return accept


PII_PATTERNS: tuple[PiiPattern, ...] = (
    PiiPattern(
        "email",
        "[EMAIL]",
        re.compile(r"(?P<pii>(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})"),
        "e-mail addresses",
    ),
    PiiPattern(
        "url",
        "[URL]",
        re.compile(r"(?P<pii>(?:https?://|(?<![A-Za-z0-9.])www\.)[^\s<>\"'\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]*[^\s<>\"'.,;:!?)\]}\u3000-\u303f\uff00-\uffef\u4e00-\u9fff])", re.IGNORECASE),
        "web addresses starting with http://, https:// or www. (trailing punctuation is kept)",
    ),
    PiiPattern(
        "id_number",
        "[ID_NUMBER]",
        re.compile(_D + r"(?P<pii>[1-9][0-9]{5}(?:18|19|20)[0-9]{2}" + _MMDD + r"[0-9]{3}[0-9Xx])(?![0-9A-Za-z])"),
        "Chinese resident ID numbers, 18 characters: area, birth date, sequence, check digit or X",
    ),
    PiiPattern(
        "id_number_old",
        "[ID_NUMBER]",
        re.compile(_D + r"(?P<pii>[1-9][0-9]{7}" + _MMDD + r"[0-9]{3})" + _ND),
        "old 15-digit Chinese resident ID numbers: area, yymmdd birth date, sequence",
    ),
    PiiPattern(
        "wechat",
        "[WECHAT]",
        re.compile(
            r"(?:微信|威信|薇信|(?<![A-Za-z])(?:wechat|weixin|wx|vx|v信))"
            r"(?P<sep>\s*(?:号|账号|帐号|id)?\s*(?:[:：]|是|为|id)?\s*)"
            r"(?P<pii>[A-Za-z][A-Za-z0-9_\-]{5,19}|[0-9]{5,11})(?![A-Za-z0-9_\-])",
            re.IGNORECASE,
        ),
        "WeChat IDs introduced by 微信 / WeChat / wx / vx / V信 (the keyword is kept)",
        accept=_wechat_ok,
    ),
    PiiPattern(
        "qq",
        "[QQ]",
        re.compile(
            r"(?:(?<![A-Za-z])qq|扣扣|企鹅)(?:号码|号|群)?\s*(?:[:：]|是|为)?\s*(?P<pii>[1-9][0-9]{4,10})" + _ND,
            re.IGNORECASE,
        ),
        "QQ numbers (5-11 digits) introduced by QQ / QQ号 / 扣扣 (the keyword is kept)",
    ),
    PiiPattern(
        "phone_cn_mobile",
        "[PHONE]",
        re.compile(_D + r"(?P<pii>(?:(?:\+|00)?86[ \-]?)?1[3-9][0-9](?:[ \-]?[0-9]{4}){2})" + _ND),
        "Chinese mobile numbers 1[3-9]xxxxxxxxx, with +86/0086 and space or dash separators",
    ),
    PiiPattern(
        "phone_international",
        "[PHONE]",
        re.compile(r"(?P<pii>(?<![0-9A-Za-z+])\+[1-9][0-9]{0,2}(?:[ \-.]?\(?[0-9]{1,4}\)?){2,5})" + _ND),
        "international numbers written with a leading + (8-15 digits)",
        accept=_digits_between(8, 15),
    ),
    PiiPattern(
        "phone_cn_landline",
        "[PHONE]",
        re.compile(_D + r"(?P<pii>(?:\(0[1-9][0-9]{1,2}\)|0[1-9][0-9]{1,2})[ \-]?[0-9]{7,8})" + _ND),
        "Chinese landlines with area code: 010-12345678, 0755 1234567, (021)12345678",
    ),
    PiiPattern(
        "phone_nanp",
        "[PHONE]",
        re.compile(r"(?P<pii>(?<![0-9A-Za-z])(?:1[ \-.]?)?(?:\([2-9][0-9]{2}\)[ ]?|[2-9][0-9]{2}[ \-.])[0-9]{3}[ \-.][0-9]{4})" + _ND),
        "US/Canada numbers: (555) 123-4567, 555-123-4567, 555.123.4567, 1 555 123 4567",
    ),
)


def _apply(pattern: PiiPattern, text: str, folded: str) -> tuple[str, str]:
    """Replace `pattern`'s matches (found in `folded`) in both `text` and its folded copy."""
    pieces: list[str] = []
    folded_pieces: list[str] = []
    last = 0
    for match in pattern.regex.finditer(folded):
        if pattern.accept is not None and not pattern.accept(match):
            continue
        start, end = match.span(pattern.group)
        pieces += [text[last:start], pattern.placeholder]
        folded_pieces += [folded[last:start], pattern.placeholder]
        last = end
    if not pieces:
        return text, folded
    pieces.append(text[last:])
    folded_pieces.append(folded[last:])
    return "".join(pieces), "".join(folded_pieces)


def anonymize(text: str) -> str:
    """`text` with phones, e-mails, ID numbers, URLs, WeChat IDs and QQ numbers replaced by
    [PHONE], [EMAIL], [ID_NUMBER], [URL], [WECHAT] and [QQ]."""
    if not text:
        return text
    folded = text.translate(_FOLD) if _FULL_WIDTH.search(text) else text
    for pattern in PII_PATTERNS:
        text, folded = _apply(pattern, text, folded)
    return text


R = TypeVar("R")


def anonymize_record(record: R) -> R:
    """A copy of a record (any dataclass with title, description, query, answers) with all its
    help-seeker and counselor text anonymized."""
    return dataclasses.replace(
        record,  # type: ignore[type-var]
        title=anonymize(record.title),  # type: ignore[attr-defined]
        description=anonymize(record.description),  # type: ignore[attr-defined]
        query=anonymize(record.query),  # type: ignore[attr-defined]
        answers=[anonymize(a) for a in record.answers],  # type: ignore[attr-defined]
    )
