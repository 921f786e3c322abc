"""Generate help-seeker-like texts with planted personal data, to measure `anonymize`.

    python tests/pii_corpus.py [--seed 0] [--n 320]   # prints the removal rate per kind

The values and sentence frames here are written for this test and deliberately NOT taken from
empathy_rl/assets/pii_gazetteers.yaml: several names use given names or surnames the gazetteers
do not list, and some employers and schools have no suffix, so the rate measures what the rules
find in text they were not built from. Every value is fictional or a well-known public
organisation; ID and card numbers are generated (valid date / Luhn digit) and belong to no one.
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass

ZH_NAMES = ["张伟明", "李娜", "王建国", "刘晓燕", "陈思远", "杨帆", "赵一鸣", "黄子韬", "周杰", "吴敏", "徐静蕾", "孙悦", "马丽", "朱婷",
            "胡歌", "郭晶晶", "何炅", "高圆圆", "林俊杰", "罗志祥", "郑秀文", "梁朝伟", "谢娜", "宋佳", "唐嫣", "许巍", "韩雪", "冯程程",
            "邓超", "曹颖", "彭于晏", "萧敬腾", "田亮", "董卿", "袁泉", "蒋欣", "蔡依林", "余华", "欧阳娜娜", "司马南"]
ZH_NAME_FRAMES = ["{v}昨天又在群里骂我了。", "我叫{v}，今年二十岁。", "我男朋友{v}最近对我很冷淡。", "{v}老师总是当众批评我。",
                  "和{v}分手以后我一直睡不好。", "我的室友{v}经常半夜打游戏。", "上周{v}跟我说她要搬走。", "我一直暗恋{v}，但不敢说。"]
EN_NAMES = ["Emily Johnson", "Michael Brown", "Sarah O'Connor", "David Kim", "Jessica Alvarez", "Tyler Nguyen", "Hannah Schmidt",
            "Marcus Lee", "Priya Patel", "Kevin O'Brien", "Laura Chen", "Brandon Miller", "Aaliyah Washington", "Connor Murphy",
            "Sofia Rossi", "Ethan Wright", "Grace Taylor", "Will Harris", "Olivia Martin", "Jamal Carter"]
EN_NAME_FRAMES = ["{v} keeps texting me late at night.", "My boyfriend {v} ignores me for days.", "I told my therapist {v} everything.",
                  "Yesterday I ran into {v} at the mall and froze.", "My name is {v} and I need advice.",
                  "I can't stop thinking about {v}.", "Me and {v} broke up in May."]
ZH_ADDRESSES = ["北京市朝阳区建国路88号", "上海市浦东新区世纪大道100号", "广州市天河区天河路385号", "杭州市西湖区文三路90号",
                "深圳市南山区科技园南区8栋", "阳光花园3栋2单元501室", "武汉市洪山区珞喻路1037号", "南京市鼓楼区中山路18号",
                "西安市雁塔区小寨东路1号", "幸福里小区5号楼", "翠苑新村12幢301室", "成都市武侯区人民南路12号"]
ZH_ADDRESS_FRAMES = ["我住在{v}，晚上经常一个人。", "我家在{v}附近。", "快递地址是{v}。", "我们去年搬到了{v}。"]
EN_ADDRESSES = ["123 Maple Street", "45 Oak Avenue, Apt 3B", "7 Elm Rd", "1600 Pennsylvania Avenue", "221B Baker Street",
                "89 Sunset Blvd, Los Angeles, CA 90028", "12 Church Lane", "500 Main St, Springfield, IL 62701", "10 Downing Street",
                "77 Harbour View Drive"]
EN_ADDRESS_FRAMES = ["I live at {v} with my parents.", "My ex showed up at {v} last night.", "Please don't come to {v} again.",
                     "We moved to {v} last year."]
ZH_SCHOOLS = ["清华大学", "北京大学", "复旦大学", "北京市第四中学", "人大附中", "华东师范大学", "深圳中学", "杭州外国语学校",
              "南京师范大学附属中学", "成都七中", "武汉大学", "浙江大学"]
ZH_SCHOOL_FRAMES = ["我在{v}读大二，压力很大。", "我是{v}的学生。", "我去年考上了{v}，可是一点都不开心。", "{v}的老师对我很好。"]
EN_SCHOOLS = ["Lincoln High School", "Stanford University", "University of Michigan", "Boston College", "Jefferson Middle School",
              "St. Mary's Academy", "Oakwood Elementary School", "Georgia Institute of Technology", "Riverside Community College", "Harvard"]
EN_SCHOOL_FRAMES = ["I go to {v} and I hate it.", "I'm a junior at {v}.", "I got rejected by {v} today.", "Everyone at {v} ignores me."]
ZH_EMPLOYERS = ["阿里巴巴集团", "腾讯公司", "华为技术有限公司", "中国工商银行", "字节跳动", "北京协和医院", "顺丰速运有限公司",
                "百度公司", "京东集团", "招商银行", "德勤会计师事务所", "小米科技"]
ZH_EMPLOYER_FRAMES = ["我在{v}上班，天天加班。", "我是{v}的员工。", "{v}的领导总是让我背锅。", "我刚从{v}离职。"]
EN_EMPLOYERS = ["Google", "Amazon", "Acme Corp", "Goldman Sachs", "Starbucks", "Walmart Inc.", "Deloitte Consulting",
                "Kaiser Permanente Hospital", "Bank of America", "Tesla Motors"]
EN_EMPLOYER_FRAMES = ["I work at {v} and my manager yells at me.", "I've been employed by {v} for six years.",
                      "{v} laid me off last week.", "My team at {v} excludes me."]
ZH_CONTACT_FRAMES = ["有事可以打我电话{v}。", "我的邮箱是{v}，希望有人回复。", "这是我的主页{v}，里面有我写的日记。",
                     "我的身份证号{v}被人盗用了。", "银行卡号{v}里的钱被骗光了。", "我的护照号码是{v}。"]
EN_CONTACT_FRAMES = ["You can call me at {v}.", "Email me at {v} please.", "My blog is {v} if you want to read it.",
                     "Someone used my SSN {v} to open accounts.", "My card {v} was charged twice.", "My passport number is {v}."]


@dataclass(frozen=True)
class Planted:
    kind: str
    language: str
    value: str
    text: str


def _luhn_complete(prefix: str) -> str:
    digits = [int(c) for c in prefix + "0"]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return prefix + str((10 - total % 10) % 10)


def _cn_id(rng: random.Random) -> str:
    body = f"{rng.choice(['110101', '310104', '440305', '510107'])}{rng.randint(1970, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return body + rng.choice("0123456789X")


def _contact(rng: random.Random, language: str, slot: int) -> str:
    if slot == 0:
        return f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(0, 99999999):08d}" if language == "zh" else f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    if slot == 1:
        user = rng.choice(["xiaoyu", "sad.cat", "lonely_bird", "mike.r", "jenny2004", "anon.writer"])
        return f"{user}{rng.randint(1, 999)}@{rng.choice(['163.com', 'qq.com', 'gmail.com', 'outlook.com', 'example.org'])}"
    if slot == 2:
        return rng.choice(["https://weibo.com/u/", "www.douban.com/people/", "blog.example.com/", "https://medium.com/@", "myblog.cn/"]) + str(rng.randint(1000, 99999))
    if slot == 3:
        return _cn_id(rng) if language == "zh" else f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
    if slot == 4:
        card = _luhn_complete(rng.choice(["622202", "621700", "411111", "550000"]) + f"{rng.randint(0, 999999999):09d}")
        return " ".join(card[i:i + 4] for i in range(0, 16, 4)) if rng.random() < 0.5 else card
    return f"{rng.choice('EG')}{rng.randint(10000000, 99999999)}"


def generate(n: int = 320, seed: int = 0) -> list[Planted]:
    """`n` texts with one planted item each, kinds and languages in turn, deterministic for `seed`."""
    rng = random.Random(seed)
    kinds = [
        ("name", "zh", ZH_NAMES, ZH_NAME_FRAMES), ("name", "en", EN_NAMES, EN_NAME_FRAMES),
        ("address", "zh", ZH_ADDRESSES, ZH_ADDRESS_FRAMES), ("address", "en", EN_ADDRESSES, EN_ADDRESS_FRAMES),
        ("school", "zh", ZH_SCHOOLS, ZH_SCHOOL_FRAMES), ("school", "en", EN_SCHOOLS, EN_SCHOOL_FRAMES),
        ("employer", "zh", ZH_EMPLOYERS, ZH_EMPLOYER_FRAMES), ("employer", "en", EN_EMPLOYERS, EN_EMPLOYER_FRAMES),
        ("contact", "zh", None, ZH_CONTACT_FRAMES), ("contact", "en", None, EN_CONTACT_FRAMES),
    ]
    out = []
    for i in range(n):
        kind, language, values, frames = kinds[i % len(kinds)]
        if values is None:
            slot = rng.randrange(len(frames))
            value, frame = _contact(rng, language, slot), frames[slot]
            kind = ["phone", "email", "url", "id_number", "bank_card", "passport"][slot]
        else:
            value, frame = rng.choice(values), rng.choice(frames)
        out.append(Planted(kind, language, value, frame.format(v=value)))
    return out


def leaked(item: Planted, output: str) -> bool:
    """Whether any identifying part of the planted value survives in `output`: the whole value,
    or for names any of its words (English) or the given name (Chinese, two or more characters)."""
    if item.value in output:
        return True
    if item.kind == "name":
        if item.language == "en":
            return any(re.search(rf"\b{re.escape(w)}\b", output) for w in item.value.split())
        given = item.value[2:] if item.value[:2] in ("欧阳", "司马") else item.value[1:]
        return len(given) >= 2 and given in output
    digits = re.sub(r"[^0-9]", "", item.value)
    if len(digits) >= 6:
        return digits in re.sub(r"[^0-9]", "", output)
    return False


def removal_rates(items: list[Planted]) -> dict[str, float]:
    from empathy_rl.anonymize import anonymize

    totals: dict[str, list[int]] = {}
    for item in items:
        ok = not leaked(item, anonymize(item.text))
        for key in ("all", item.kind, f"{item.kind}/{item.language}"):
            totals.setdefault(key, []).append(int(ok))
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(totals.items())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=320)
    args = parser.parse_args()
    for key, rate in removal_rates(generate(args.n, args.seed)).items():
        print(f"{key:20s} {rate:.3f}")
