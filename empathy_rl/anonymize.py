"""Replace personal identifiers in counseling text with placeholders, before anything is stored.

Help-seekers sometimes leave a phone number, an e-mail, a WeChat ID, an ID-card or bank-card
number, or name people, streets, schools and employers in their post. Every record is passed
through `anonymize` before it is written to disk, logged or sampled into run outputs, so those
never leave the raw source file.

Names, addresses, schools and employers are found by rules over gazetteers and cue words kept in
`empathy_rl/assets/pii_gazetteers.yaml` (frequent Chinese surnames and given-name characters,
English given names, titles, address units such as 路/号/小区 or Street/Ave, organisation suffixes
such as 大学/公司 or University/Inc.). A library was considered: presidio-analyzer (PyPI) finds
names and places with a spaCy NER model, and those models (en_core_web_*, zh_core_web_*) are not
on PyPI, so they cannot be installed here or in CI; without them presidio has pattern recognizers
only, mostly for US formats. docs/safety.md reports the measured removal rates.

Public crisis-line and emergency numbers (empathy_rl/assets/crisis_resources.yaml) are never
replaced: they are not personal data, and a reply must keep them.

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
import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Optional, TypeVar

import yaml

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


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(match: re.Match[str]) -> bool:
    # 16-19 digits, and either written in groups (as cards are) or passing the Luhn check
    digits = re.sub(r"[^0-9]", "", match.group("pii"))
    return 16 <= len(digits) <= 19 and (len(digits) != len(match.group("pii")) or _luhn(digits))


@functools.lru_cache(maxsize=1)
def gazetteers() -> dict[str, Any]:
    """The parsed pii_gazetteers.yaml."""
    return yaml.safe_load(resources.files("empathy_rl.assets").joinpath("pii_gazetteers.yaml").read_text(encoding="utf-8"))


def _alt(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_BASE_PATTERNS: tuple[PiiPattern, ...] = (
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


_HAN = "\u4e00-\u9fff"
_URL_TAIL = "[^\\s<>\"'\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]*[^\\s<>\"'.,;:!?)\\]}\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]"

_ID_PATTERNS: tuple[PiiPattern, ...] = (
    PiiPattern(
        "url_bare",
        "[URL]",
        re.compile(r"(?P<pii>(?<![@A-Za-z0-9_.\-])(?:[a-z0-9][a-z0-9\-]*\.)+(?:com|cn|net|org|io|me|co|edu|gov|info|xyz|top|cc|tv|uk|de|jp|hk|tw|app|dev|ly|so|site|online)(?:\.[a-z]{2})?(?:/" + _URL_TAIL + ")?)(?![A-Za-z0-9_\-])", re.IGNORECASE),
        "web addresses without http:// or www. on common top-level domains (weibo.com/u/1, x.cn)",
    ),
    PiiPattern(
        "id_number_spaced",
        "[ID_NUMBER]",
        re.compile(_D + r"(?P<pii>[1-9][0-9]{5}[ \-](?:18|19|20)[0-9]{2}" + _MMDD + r"[ \-][0-9]{3}[0-9Xx])(?![0-9A-Za-z])"),
        "Chinese resident ID numbers written in groups: 110101 19900307 1234",
    ),
    PiiPattern(
        "id_number_other",
        "[ID_NUMBER]",
        re.compile(r"(?P<pii>(?<![0-9A-Za-z])(?:[0-9]{3}-[0-9]{2}-[0-9]{4}|[A-Z]{1,2}[0-9]{6}\([0-9A]\)|[A-Z][12][0-9]{8})(?![0-9A-Za-z]))"),
        "US social security numbers 123-45-6789, Hong Kong IDs A123456(7), Taiwan IDs A123456789",
    ),
    PiiPattern(
        "passport",
        "[PASSPORT]",
        re.compile(r"(?:护照|passport)(?:号码|号|\s*number|\s*no\.?|\s*#)?\s*(?:是|为|:|：)?\s*(?P<pii>[A-Z]{1,2}[0-9]{6,8}|[0-9]{8,9})(?![0-9A-Za-z])", re.IGNORECASE),
        "passport numbers introduced by 护照 / passport (the keyword is kept)",
    ),
    PiiPattern(
        "passport_cn",
        "[PASSPORT]",
        re.compile(r"(?P<pii>(?<![A-Za-z0-9])[EGDSP][0-9]{8})(?![0-9A-Za-z])"),
        "Chinese passport numbers: E or G (or D, S, P) and 8 digits",
    ),
    PiiPattern(
        "account",
        "[ACCOUNT]",
        re.compile(r"(?:银行卡号?|卡号|银行账号|账号|账户|帐号|帐户|card(?:\s*number|\s*no\.?)|account(?:\s*number|\s*no\.?)|acct\.?|IBAN)\s*(?:码|号码|是|为|:|：|#)?\s*(?P<pii>[0-9A-Z](?:[0-9A-Z]|[ \-](?=[0-9A-Z])){5,33})(?![0-9A-Za-z])", re.IGNORECASE),
        "bank and other account numbers introduced by 卡号 / 账号 / card number / account number / IBAN (the keyword is kept)",
        accept=lambda m: sum(c.isdigit() for c in m.group("pii")) >= 6,
    ),
    PiiPattern(
        "bank_card",
        "[BANK_CARD]",
        re.compile(_D + r"(?P<pii>(?:[0-9]{4}[ \-]){3}[0-9]{4}(?:[0-9]{1,3})?|(?:[0-9]{4}[ \-]){4}[0-9]{1,3}|[0-9]{16,19})" + _ND),
        "bank-card numbers: 16-19 digits in groups of four, or a bare run that passes the Luhn check",
        accept=_card_ok,
    ),
)


def _zh_patterns(g: dict[str, Any]) -> tuple[PiiPattern, ...]:
    z = g["zh"]
    stop = re.escape(z["stop_chars"])
    han = f"(?:(?![{stop}])[{_HAN}])"  # a Chinese character that is not a function word
    surname = _alt(z["surnames"])
    given = f"[{re.escape(z['given_chars'])}]"
    not_names = set(z["not_names"])
    generic = set(z["generic_orgs"])
    head_end = set(z["org_head_end"])

    def name_ok(match: re.Match[str]) -> bool:
        name = match.group("pii")
        return name not in not_names and name[:2] not in not_names and name[1:3] not in not_names

    def org_ok(match: re.Match[str]) -> bool:
        head = match.group("head")
        return len(head) >= 2 and head not in generic and head[-1] not in head_end

    admin = f"(?:{han}{{2,6}}(?:省|自治区|市|区|县|镇|乡|村))"
    number = "[0-9一二三四五六七八九十百]+"
    street_num = f"(?:{han}{{2,6}}(?:大街|大道|路|街|巷|弄|胡同){number}号(?:院)?)"
    street = f"(?:{han}{{2,6}}(?:大街|大道|路|街|巷|弄|胡同))"
    estate = f"(?:{han}{{2,6}}(?:小区|花园|公寓|大厦|家园|新村|苑))"
    unit = f"(?:{number}(?:号楼|栋|幢|号|单元|室|层|楼))"
    address = (
        f"(?:{admin}{{0,3}}{street_num}{estate}?{unit}*"
        f"|{admin}{{1,3}}(?:{street}|{estate}){unit}*"
        f"|{admin}{{0,3}}{estate}{unit}*"
        f"|{admin}{{2,4}})"
    )
    return (
        PiiPattern("zh_address", "[ADDRESS]", re.compile(f"(?P<pii>{address})"),
                   "Chinese addresses: province/city/district, street and house number (路/街 + 号), estates (小区/花园/公寓), building/unit/room"),
        PiiPattern("zh_school", "[SCHOOL]", re.compile(f"(?P<pii>(?P<head>{han}{{1,10}}?)(?:{z['school_suffixes']}))"),
                   "Chinese school names: a proper name before 大学/学院/中学/小学/幼儿园... (generic 上大学/重点高中 are kept)", accept=org_ok),
        PiiPattern("zh_employer", "[EMPLOYER]", re.compile(f"(?P<pii>(?P<head>{han}{{1,10}}?)(?:{z['employer_suffixes']}))"),
                   "Chinese organisation names before 公司/集团/银行/医院/事务所... (generic 一家公司/去医院 are kept)", accept=org_ok),
        PiiPattern("zh_employer_cued", "[EMPLOYER]", re.compile(f"(?:在|从|进了|进入|加入|入职)(?P<head>{han}{{2,8}}?)(?=(?:上班|工作|实习|打工|离职|辞职|被裁|的(?:员工|领导|老板|同事)))"),
                   "Chinese employers between 在/从/入职 and 上班/工作/离职... (generic 在公司上班 is kept)", group="head", accept=org_ok),
        PiiPattern("zh_employer_of", "[EMPLOYER]", re.compile(f"(?P<head>{han}{{2,8}}?)(?=的(?:员工|领导|老板|HR|人事|经理|同事))"),
                   "Chinese employers before 的员工/的领导/的老板 (generic 部门的领导 is kept)", group="head", accept=org_ok),
        PiiPattern("zh_name_cued", "[NAME]", re.compile(f"(?:{z['name_before']})(?:是|叫|的)?\\s*(?P<pii>(?:{surname})(?:{given}{{1,2}}|{han}{{1,2}}))"),
                   "Chinese full names after a cue (我叫, 名叫, 我男朋友, 同事...): any surname plus one or two characters (the cue is kept)", accept=name_ok),
        PiiPattern("zh_name_titled", "[NAME]", re.compile(f"(?P<pii>(?:{surname}){han}{{1,2}}?)(?=(?:{z['name_after']}))"),
                   "Chinese full names before a title or verb of speech (老师, 先生, 医生, 说...)", accept=name_ok),
        PiiPattern("zh_name", "[NAME]", re.compile(f"(?P<pii>(?:{surname}){given}{{2}})"),
                   "Chinese three-character names without a cue: a frequent surname and two frequent given-name characters (shorter ones need a cue: 胡思乱想, 如何建立 are words)", accept=name_ok),
    )


def _en_patterns(g: dict[str, Any]) -> tuple[PiiPattern, ...]:
    e = g["en"]
    generic = _alt(e["generic_words"])
    cap = r"[A-Z][a-zA-Z'\-]+"
    surname = rf"(?:[A-Z]\.|(?!(?:{generic})\b)(?:O'|Mc|Mac|D')?[A-Z][a-z]+(?:-[A-Z][a-z]+)?)"
    org_word = rf"(?:[A-Z][\w'&.\-]*|&|of|and|the|de)"
    return (
        PiiPattern("en_address", "[ADDRESS]", re.compile(
            rf"(?P<pii>\b[0-9]{{1,5}}[A-Za-z]?,? (?:{cap} ){{1,3}}(?:{e['street_suffixes']})\b\.?(?:,? (?:{e['unit_words']})\.? ?#?[0-9A-Za-z]+)?"
            rf"(?:, (?:{cap} ){{0,2}}{cap}(?:, [A-Z]{{2}})?(?: [0-9]{{5}}(?:-[0-9]{{4}})?)?)?)"
        ), "English street addresses: number, capitalised street name, Street/Ave/Rd..., optional unit, city, state and ZIP"),
        PiiPattern("en_postcode", "[ADDRESS]", re.compile(r"(?P<pii>\b[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}\b)"),
                   "UK postcodes: SW1A 1AA"),
        PiiPattern("en_school", "[SCHOOL]", re.compile(
            rf"(?P<pii>\b(?!(?:{generic})\b)(?:{org_word} ){{0,4}}(?:{e['school_suffixes']})\b(?: of(?: {cap}){{1,3}})?|\bUniversity of(?: {cap}){{1,3}})"
        ), "English school names: capitalised words before University/College/High School/Academy..., University of X", accept=lambda m: " " in m.group("pii").strip()),
        PiiPattern("en_employer", "[EMPLOYER]", re.compile(
            rf"(?P<pii>\b(?!(?:{generic})\b)(?:{org_word} ){{1,4}}(?:{e['employer_suffixes']})\b\.?)"
        ), "English organisation names before Inc./LLC/Ltd/Corp/Bank/Hospital..."),
        PiiPattern("en_employer_cued", "[EMPLOYER]", re.compile(
            rf"(?:{e['employer_cues']}) (?:the )?(?P<pii>(?!(?:{generic})\b)[A-Z][\w'&\-]*(?: (?:[A-Z][\w'&\-]*|&|of)){{0,4}})", re.IGNORECASE
        ), "employers after 'work at', 'employed by', 'job at'... (the cue is kept)", accept=lambda m: m.group("pii")[:1].isupper()),
        PiiPattern("en_employer_at", "[EMPLOYER]", re.compile(
            rf"\b(?:team|manager|boss|coworkers?|colleagues|job|shift|internship|interview|supervisor|office) at (?P<pii>(?!(?:{generic})\b)[A-Z][\w'&\-]*(?: [A-Z][\w'&\-]*){{0,4}})"
            rf"|(?P<pii2>\b(?!(?:{generic})\b)[A-Z][\w'&\-]*(?: [A-Z][\w'&\-]*){{0,4}})(?= (?:laid me off|fired me|hired me|let me go|rejected my application))"
        ), "employers after 'my team at', 'job at' or before 'laid me off', 'fired me' (the cue is kept)", group="pii"),
        PiiPattern("en_name_titled", "[NAME]", re.compile(rf"\b(?:{e['titles']})\.? (?P<pii>[A-Z][a-z]+(?:[ \-][A-Z][a-z]+)?)"),
                   "names after a title (Mr, Dr, Coach...; the title is kept)"),
        PiiPattern("en_name_cued", "[NAME]", re.compile(
            rf"\b(?:[Mm]y|[Hh]is|[Hh]er|[Oo]ur|[Tt]heir) (?:ex-?)?(?:boyfriend|girlfriend|husband|wife|partner|friend|best friend|boss|manager|sister|brother|son|daughter|therapist|counsel+or|teacher|roommate|coworker|colleague|cousin|neighbou?r|mom|mum|dad|stepdad|stepmom|fianc[eé]e?),? (?P<pii>[A-Z][a-z]+(?: {surname})?)\b"
        ), "names after 'my boyfriend', 'my boss', 'my therapist'... (the cue is kept)"),
        PiiPattern("en_name_cued_b", "[NAME]", re.compile(
            rf"\b(?:named|called|[Nn]ame is|[Nn]ame's|I'm|I am|[Tt]his is|[Ss]igned|[Ll]ove,|[Rr]egards,) (?P<pii>(?!(?:{generic})\b)[A-Z][a-z]+(?: {surname})?)\b"
        ), "names after 'named', 'called', 'my name is', 'I'm', sign-offs (the cue is kept)",
            accept=lambda m: m.group("pii") in _en_known() or " " in m.group("pii")),
        PiiPattern("en_name", "[NAME]", re.compile(rf"\b(?P<pii>(?:{_alt(e['first_names'])})(?: {surname})?)\b(?!\.[a-z])"),
                   "common English given names, with the surname that follows"),
        PiiPattern("en_name_pair", "[NAME]", re.compile(
            rf"(?<![.!?] )(?<![.!?\n])(?<!^)(?<=[a-z,] )(?P<pii>(?!(?:{generic})\b)[A-Z][a-z]+ {surname})\b"
            rf"|(?P<pii2>\b(?!(?:{generic})\b)[A-Z][a-z]+ {surname})(?= (?:keeps|kept|said|says|told|texted|texts|is|was|has|and|called|yelled|left|hit|hurt)\b)"
        ), "two capitalised words that are not generic (First Last) mid-sentence, or before a verb", group="pii"),
        PiiPattern("en_name_word", "[NAME]", re.compile(rf"\b(?P<pii>(?:{_alt(e['word_names'])}) (?!(?:{generic})\b)[A-Z][a-z]{{2,}})\b"),
                   "given names that are also words (Will, May, Hope...) when a capitalised surname follows"),
    )


@functools.lru_cache(maxsize=1)
def _en_known() -> frozenset[str]:
    e = gazetteers()["en"]
    return frozenset(e["first_names"]) | frozenset(e["word_names"])


@functools.lru_cache(maxsize=1)
def public_numbers() -> frozenset[str]:
    """Digits of the public crisis and emergency numbers that are never anonymized."""
    from empathy_rl.safety import load_crisis_resources

    out = set()
    for entry in load_crisis_resources()["languages"].values():
        for item in entry["resources"]:
            digits = re.sub(r"[^0-9]", "", str(item))
            if len(digits) >= 3:
                out.add(digits)
    return frozenset(out)


def _apply(pattern: PiiPattern, text: str, folded: str) -> tuple[str, str]:
    """Replace `pattern`'s matches (found in `folded`) in both `text` and its folded copy."""
    pieces: list[str] = []
    folded_pieces: list[str] = []
    last = 0
    for match in pattern.regex.finditer(folded):
        if pattern.accept is not None and not pattern.accept(match):
            continue
        if pattern.placeholder == "[PHONE]" and re.sub(r"[^0-9]", "", match.group(pattern.group)) in public_numbers():
            continue
        start, end = match.span(pattern.group)
        if start < 0 and "pii2" in pattern.regex.groupindex:  # the pattern's second alternative matched
            start, end = match.span("pii2")
        if start < 0:
            continue
        pieces += [text[last:start], pattern.placeholder]
        folded_pieces += [folded[last:start], pattern.placeholder]
        last = end
    if not pieces:
        return text, folded
    pieces.append(text[last:])
    folded_pieces.append(folded[last:])
    return "".join(pieces), "".join(folded_pieces)


def _build_patterns() -> tuple[PiiPattern, ...]:
    """The order matters (module docstring): e-mails and URLs, then ID, passport, account and card
    numbers, WeChat/QQ, phones; then addresses (before names: "Lincoln Street" is a place), schools
    and employers (before names: "Emily Carr University"), and names last."""
    base = {p.name: p for p in _BASE_PATTERNS}
    ids = {p.name: p for p in _ID_PATTERNS}
    g = gazetteers()
    head = [base["email"], base["url"], ids["url_bare"], base["id_number"], ids["id_number_spaced"], base["id_number_old"],
            ids["id_number_other"], ids["passport"], ids["passport_cn"], ids["account"], base["wechat"], base["qq"]]
    phones = [p for p in _BASE_PATTERNS if p.placeholder == "[PHONE]"]
    zh = {p.name: p for p in _zh_patterns(g)}
    en = {p.name: p for p in _en_patterns(g)}
    places = [zh["zh_address"], en["en_address"], en["en_postcode"], zh["zh_school"], en["en_school"], zh["zh_employer"],
              zh["zh_employer_cued"], zh["zh_employer_of"], en["en_employer"], en["en_employer_cued"], en["en_employer_at"]]
    names = [zh["zh_name_cued"], zh["zh_name_titled"], zh["zh_name"], en["en_name_titled"], en["en_name_cued"],
             en["en_name_cued_b"], en["en_name"], en["en_name_pair"], en["en_name_word"]]
    # bank cards after phones would lose grouped cards to phone patterns: cards go right before phones
    return tuple(head + [ids["bank_card"]] + phones + places + names)


PII_PATTERNS: tuple[PiiPattern, ...] = _build_patterns()
MAX_CHARS = 2_000_000  # longer texts are cut before anonymizing (bounded time); the tail is dropped, never kept raw


def anonymize(text: str) -> str:
    """`text` with phones, e-mails, ID/passport/account/card numbers, URLs, WeChat IDs, QQ numbers,
    person names, addresses, schools and employers replaced by [PHONE], [EMAIL], [ID_NUMBER],
    [PASSPORT], [ACCOUNT], [BANK_CARD], [URL], [WECHAT], [QQ], [NAME], [ADDRESS], [SCHOOL] and
    [EMPLOYER]."""
    if not text:
        return text
    text = text[:MAX_CHARS]
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
