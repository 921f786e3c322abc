"""Templated Chain-of-Empathy (CoE) examples for the SFT warm start of the tiny test model.

A randomly initialised tiny model cannot find the CoE format by reinforcement alone: its samples
almost never contain the twelve tags in order, so the binary format reward is zero everywhere and
GRPO has no signal. A few hundred supervised steps on these examples teach it the *structure*
(four short layers inside ``<empathy_think>``, then an ``<answer>``) so that RL has something to
improve.

The examples are deliberately simple. Queries are the bundled help-seeker posts in
``empathy_rl/assets/seed_posts.jsonl``; the four layers and the answer are assembled from small
template pools keyed by the post's topic and language, so they vary but stay consistent with the
query. They are not counselling data and must not be used to teach a real model how to respond:
the real SFT stage uses reviewed CoE data. Crisis posts (topic ``crisis``) always get crisis
layers and an answer that names the risk and points to local emergency services, a crisis line
and trusted people.

Length limits keep a rendered example within the tiny model's 160-token response budget:
every layer is at most 60 characters in English or 24 in Chinese, and the answer is 80-240
characters in English or 30-80 in Chinese (``LAYER_MAX_CHARS`` and ``ANSWER_CHARS``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from typing import Any

LANGUAGES: tuple[str, ...] = ("zh", "en")
CRISIS_TOPIC = "crisis"
SEED_POSTS_FILE = "seed_posts.jsonl"

# Per language: maximum characters of one layer, and (min, max) characters of the answer.
LAYER_MAX_CHARS: dict[str, int] = {"zh": 24, "en": 60}
ANSWER_CHARS: dict[str, tuple[int, int]] = {"zh": (30, 80), "en": (80, 240)}

# Words at least one of which every crisis answer contains (used by tests and sanity checks).
CRISIS_KEYWORDS: dict[str, tuple[str, ...]] = {
    "zh": ("急救", "危机热线"),
    "en": ("emergency", "crisis line"),
}


@dataclass(frozen=True)
class CoEExample:
    """One warm-start example: a seeker query and the CoE response the tiny model should imitate."""

    language: str
    query: str
    layers: tuple[str, str, str, str]
    answer: str
    crisis: bool

    def response(self) -> str:
        """The canonical CoE text of this example (``empathy_rl.coe.render_coe``)."""
        from empathy_rl.coe import render_coe

        return render_coe(self.layers, self.answer)


@dataclass(frozen=True)
class _TopicPool:
    """Template pools for one topic in one language. An answer is ``opening + body + closing``."""

    emotions: tuple[str, ...]  # L1: emotions in context
    causes: tuple[str, ...]  # L2: causes and possible cognitive biases
    intents: tuple[str, ...]  # L3: validation, understanding or advice
    strategies: tuple[str, ...]  # L4: active listening, NURSE
    openings: tuple[str, ...]  # the answer's first sentence: name and validate the feeling
    bodies: tuple[str, ...]  # one gentle, practical suggestion


_EN: dict[str, _TopicPool] = {
    "work_stress": _TopicPool(
        emotions=(
            "Exhaustion and dread from a heavy workload",
            "Stress, guilt and fear of seeming uncommitted",
            "Overwhelm and shame tied to work pressure",
        ),
        causes=(
            "Too much work, few limits; all-or-nothing thinking",
            "Fear of judgement; mind-reading about the boss",
            "Unclear priorities; belief that rest means failure",
        ),
        intents=(
            "Wants validation first, then practical advice",
            "Seeks understanding and a workable next step",
        ),
        strategies=(
            "Name the strain, validate, suggest one boundary",
            "Active listening; NURSE: understand, support",
        ),
        openings=(
            "It sounds like work has been taking far more than you have to give.",
            "Carrying this much pressure at work is exhausting, and your tiredness makes sense.",
            "Feeling stretched this thin at work is hard, and it is not a personal failing.",
        ),
        bodies=(
            "It may help to list your tasks and ask your manager which ones can wait.",
            "Try protecting one small boundary this week, like a fixed finishing time.",
            "Separating what you can control from what you cannot may ease some of the weight.",
        ),
    ),
    "exams": _TopicPool(
        emotions=(
            "Panic and fear of failing an upcoming exam",
            "Disappointment and shame after a poor result",
            "Pressure and self-doubt about performance",
        ),
        causes=(
            "High stakes and expectations; catastrophising",
            "Avoidance feeds panic; one result seen as final",
            "Comparison with peers; fear of letting others down",
        ),
        intents=(
            "Wants reassurance and a practical study plan",
            "Seeks validation of effort and some advice",
        ),
        strategies=(
            "Normalise nerves, validate effort, give one step",
            "Active listening; NURSE: respect and support",
        ),
        openings=(
            "Exam pressure can make anyone's mind freeze, and your worry makes sense.",
            "It hurts to work hard and still feel it was not enough.",
            "Feeling this anxious about results is common, and it is not a sign of weakness.",
        ),
        bodies=(
            "Breaking study into short, timed blocks with breaks can calm the panic.",
            "One result does not define your ability or your future options.",
            "Testing yourself on one small topic is often calmer than rereading everything.",
        ),
    ),
    "family_conflict": _TopicPool(
        emotions=(
            "Frustration and guilt in conflict with family",
            "Hurt and feeling unheard by loved ones",
            "Torn loyalty and tension at home",
        ),
        causes=(
            "Clashing expectations; old roles resurfacing",
            "Love mixed with control; little room to talk",
            "Caught in the middle; fear of upsetting anyone",
        ),
        intents=(
            "Wants understanding and ways to talk calmly",
            "Seeks validation and advice on boundaries",
        ),
        strategies=(
            "Reflect both sides, validate, suggest a calm talk",
            "Active listening; NURSE: understand and respect",
        ),
        openings=(
            "Conflict with people you love is painful, and your frustration makes sense.",
            "Feeling unheard by your own family can be lonely and exhausting.",
            "Being caught between love and your own needs is really hard.",
        ),
        bodies=(
            "Raising one specific issue at a calm moment often works better than a big talk.",
            "You can care about your family and still set kind, clear limits.",
            "Saying how you feel with 'I' statements may help them listen rather than defend.",
        ),
    ),
    "relationships": _TopicPool(
        emotions=(
            "Heartache and longing after a relationship change",
            "Insecurity and fear of losing someone close",
            "Hurt and confusion over a partner or friend",
        ),
        causes=(
            "Loss of a close bond; replaying the past",
            "Fear of rejection; reading into small signals",
            "Unmet needs that have not been put into words",
        ),
        intents=(
            "Wants validation of the hurt and gentle advice",
            "Seeks understanding and a way to heal or reconnect",
        ),
        strategies=(
            "Validate grief, normalise pace, suggest self-care",
            "Active listening; NURSE: name feelings, explore",
        ),
        openings=(
            "Relationship pain can go very deep, and your hurt is real.",
            "When someone close feels far away, it is natural to feel scared.",
            "Healing after heartbreak takes time, and there is no deadline.",
        ),
        bodies=(
            "Sharing your feelings calmly, starting with 'I', can open a gentler conversation.",
            "Some distance from reminders, like their social media, may ease the ache.",
            "Small routines with people who care about you can help you feel steadier.",
        ),
    ),
    "loneliness": _TopicPool(
        emotions=(
            "Loneliness and emptiness in daily life",
            "Feeling unseen and disconnected from others",
            "Sadness and isolation after a life change",
        ),
        causes=(
            "New place or life stage; few close ties yet",
            "Surface contact without deeper sharing",
            "Belief that others have it easier; withdrawal",
        ),
        intents=(
            "Wants understanding and ideas to connect",
            "Seeks validation that loneliness is normal",
        ),
        strategies=(
            "Normalise loneliness; suggest small social steps",
            "Active listening; NURSE: support and explore",
        ),
        openings=(
            "Loneliness can be really heavy, and many people feel it more than they admit.",
            "Feeling unseen, even around others, is painful.",
            "It is hard when the days feel quiet and empty.",
        ),
        bodies=(
            "A regular class or club lets familiar faces slowly become friends.",
            "Reaching out to one person with a small message can be a good first step.",
            "Sharing a little more of your real self with someone you trust can deepen a bond.",
        ),
    ),
    "grief": _TopicPool(
        emotions=(
            "Grief, numbness and longing after a loss",
            "Sorrow mixed with guilt and regret",
            "Shock and sadness after losing someone loved",
        ),
        causes=(
            "Death of a loved one or pet; sudden change",
            "Regret about the past; 'should have' thinking",
            "Grief not recognised by people around them",
        ),
        intents=(
            "Wants the loss acknowledged and understood",
            "Seeks validation and gentle ways to cope",
        ),
        strategies=(
            "Acknowledge loss; normalise grief; invite memories",
            "Active listening; NURSE: respect and support",
        ),
        openings=(
            "I am so sorry for your loss; grief like this is heavy.",
            "Losing someone you love changes everything, and your pain makes sense.",
            "There is no right way or timetable to grieve.",
        ),
        bodies=(
            "Writing a letter or sharing a favourite memory can give the feelings somewhere to go.",
            "Looking after sleep, food and rest matters while grief is this raw.",
            "Talking with others who loved them can help you feel less alone in it.",
        ),
    ),
    "sleep": _TopicPool(
        emotions=(
            "Exhaustion and frustration from poor sleep",
            "Night-time worry and restlessness",
            "Irritability and fatigue after sleepless nights",
        ),
        causes=(
            "Racing thoughts at bedtime; irregular schedule",
            "Stress carried into the night; screen habits",
            "Worry about sleep that keeps sleep away",
        ),
        intents=(
            "Wants practical advice to sleep better",
            "Seeks understanding of the tiredness and tips",
        ),
        strategies=(
            "Validate fatigue; offer simple sleep habits",
            "Active listening; NURSE: understand, support",
        ),
        openings=(
            "Nights without proper sleep are draining, and your tiredness makes sense.",
            "Lying awake with a busy mind is really frustrating.",
            "Poor sleep affects everything, so it is natural to feel worn down.",
        ),
        bodies=(
            "A fixed wake-up time and a screen-free last hour can help reset your rhythm.",
            "Writing worries down in the evening can stop them following you to bed.",
            "If sleep will not come after twenty minutes, get up for something calm, then try again.",
        ),
    ),
    "anxiety": _TopicPool(
        emotions=(
            "Persistent worry and fear of the worst",
            "Nervousness and panic in daily situations",
            "Tension and unease that is hard to switch off",
        ),
        causes=(
            "Uncertainty read as danger; catastrophising",
            "Avoidance that keeps the fear going",
            "Constant self-monitoring; fear of judgement",
        ),
        intents=(
            "Wants understanding and tools to calm down",
            "Seeks validation and practical coping advice",
        ),
        strategies=(
            "Normalise anxiety; teach one calming skill",
            "Active listening; NURSE: name it, support",
        ),
        openings=(
            "Living with constant worry is exhausting, and you are not alone in it.",
            "Anxiety can make ordinary moments feel dangerous, which is really hard.",
            "It makes sense to feel on edge when your mind keeps expecting the worst.",
        ),
        bodies=(
            "Slow breathing with a longer out-breath can calm the body enough to think clearly.",
            "Asking 'what is most likely to happen?' can shrink a worst-case thought.",
            "Facing feared situations in small steps often works better than avoiding them.",
        ),
    ),
    "low_mood": _TopicPool(
        emotions=(
            "Low mood, emptiness and loss of interest",
            "Sadness and tiredness without a clear cause",
            "Hopelessness about progress; feeling stuck",
        ),
        causes=(
            "Stress building up; withdrawal from activities",
            "Harsh self-judgement; comparing with others",
            "Loss of structure; few sources of joy lately",
        ),
        intents=(
            "Wants understanding, not pressure to cheer up",
            "Seeks validation and a gentle first step",
        ),
        strategies=(
            "Validate, suggest small steps, mention a doctor",
            "Active listening; NURSE: support and explore",
        ),
        openings=(
            "Feeling low for a while is really heavy, and it is not your fault.",
            "When everything feels grey, even small tasks can seem huge.",
            "It takes honesty to notice how much your mood has changed.",
        ),
        bodies=(
            "Small steps, like a short walk or one message to a friend, can help a little.",
            "If this has lasted two weeks or more, talking to a doctor is a good idea.",
            "Try being as patient with yourself as you would be with an unwell friend.",
        ),
    ),
    "self_esteem": _TopicPool(
        emotions=(
            "Self-doubt and feeling not good enough",
            "Shame and fear of other people's judgement",
            "Insecurity and a harsh inner critic",
        ),
        causes=(
            "Constant comparison; discounting successes",
            "Early criticism shaping how they see themselves",
            "Mind-reading others' opinions; perfectionism",
        ),
        intents=(
            "Wants validation and ways to be kinder to self",
            "Seeks understanding and a confidence-building step",
        ),
        strategies=(
            "Gently challenge the critic; build self-kindness",
            "Active listening; NURSE: respect and support",
        ),
        openings=(
            "Being this hard on yourself is exhausting, and you deserve kindness.",
            "Feeling not good enough is painful, and many people share it.",
            "That harsh inner voice is not the whole truth about you.",
        ),
        bodies=(
            "Ask what you would say to a friend in your place, then say it to yourself.",
            "Noting one thing you did well each day can slowly balance the picture.",
            "When someone praises you, practise just saying 'thank you'.",
        ),
    ),
    "parenting": _TopicPool(
        emotions=(
            "Worry and helplessness as a parent",
            "Guilt and exhaustion from caring for children",
            "Frustration and fear about a child's behaviour",
        ),
        causes=(
            "Child's growing independence; strained talks",
            "Little rest or support; stretched too thin",
            "Very high standards for oneself as a parent",
        ),
        intents=(
            "Wants understanding and practical parenting tips",
            "Seeks validation of being a caring parent",
        ),
        strategies=(
            "Validate care; suggest connection before rules",
            "Active listening; NURSE: support, explore",
        ),
        openings=(
            "Parenting can be exhausting, and your worry shows how much you care.",
            "Feeling guilty does not make you a bad parent; it shows you want to do right.",
            "It is hard when the connection with your child feels strained.",
        ),
        bodies=(
            "Calm side-by-side time, like a walk or cooking together, often opens conversation.",
            "Asking for help and taking short breaks lets you parent with more patience.",
            "Making rules together with your child can reduce power struggles.",
        ),
    ),
    "body_image": _TopicPool(
        emotions=(
            "Shame and distress about appearance",
            "Anxiety about being seen and judged",
            "Frustration and guilt around food and body",
        ),
        causes=(
            "Past teasing; focusing on perceived flaws",
            "Comparison with idealised images",
            "Rigid food rules; body linked to self-worth",
        ),
        intents=(
            "Wants acceptance and less self-criticism",
            "Seeks understanding and gentle practical advice",
        ),
        strategies=(
            "Validate pain; shift focus to what the body does",
            "Active listening; NURSE: respect, support",
        ),
        openings=(
            "Feeling uncomfortable in your own body is painful, and it is not vanity.",
            "Worrying about how others see you can be exhausting.",
            "Your worth is so much more than how your body looks.",
        ),
        bodies=(
            "Noticing what your body lets you do, not just how it looks, can soften the focus.",
            "Cutting back on mirror checks and comparisons for a while may ease the pressure.",
            "If food or body worries fill much of your day, a doctor or counsellor can help.",
        ),
    ),
    CRISIS_TOPIC: _TopicPool(
        emotions=(
            "Despair and exhaustion; risk of self-harm or suicide",
            "Hopelessness and pain; immediate safety concern",
            "Shame and overwhelm; thoughts of ending life",
        ),
        causes=(
            "Stacked losses and isolation; hopeless thinking",
            "Pain feels endless; belief of being a burden",
            "Coping through self-harm; no safe outlet yet",
        ),
        intents=(
            "Needs to be heard and kept safe right now",
            "Seeks understanding; urgent need for support",
        ),
        strategies=(
            "Ask about safety directly; urge crisis help now",
            "Validate pain; link to emergency and trusted people",
        ),
        openings=(
            "Thank you for telling me; I can hear how much pain you are in.",
            "I am really glad you reached out, and I am worried about your safety.",
            "What you are feeling sounds unbearable, and I take it seriously.",
        ),
        bodies=(
            "Please contact your local emergency services or a crisis line right now.",
            "If you might hurt yourself, call emergency services or a crisis line now.",
            "Please reach a crisis line or local emergency services today.",
        ),
    ),
}

_ZH: dict[str, _TopicPool] = {
    "work_stress": _TopicPool(
        emotions=("长期加班的疲惫与委屈", "工作压力下的焦虑和自责", "被掏空的无力感"),
        causes=("任务过多且不敢拒绝", "担心被评价不够努力", "把休息等同于偷懒的想法"),
        intents=("希望被理解，也想要建议", "需要认可和可行的下一步"),
        strategies=("命名情绪，肯定付出，建议界限", "积极倾听，NURSE：理解与支持"),
        openings=("听起来工作已经让你透支很久了。", "承受这么大的工作压力，真的很辛苦。", "你的疲惫很真实，并不是你不够努力。"),
        bodies=("可以先列出任务，和领导商量哪些能往后放。", "试着给自己留一段不看工作消息的时间。", "先把能掌控的事和不能掌控的事分开看看。"),
    ),
    "exams": _TopicPool(
        emotions=("考前的紧张和害怕失败", "成绩不理想后的失落自责", "面对期待的压力和自我怀疑"),
        causes=("把一次考试看得过重", "越焦虑越回避，形成循环", "和别人比较，担心辜负家人"),
        intents=("希望被安慰，也想要方法", "需要肯定努力和具体建议"),
        strategies=("正常化紧张，肯定努力，给小步骤", "积极倾听，NURSE：尊重与支持"),
        openings=("考试带来的压力真的很大，你的担心很正常。", "付出努力却没得到期待的结果，一定很难过。", "紧张不代表你不行，很多人都会这样。"),
        bodies=("可以把复习拆成小段，每段后休息几分钟。", "一次成绩不能决定你的能力和未来。", "先从最有把握的小部分开始，会安心一些。"),
    ),
    "family_conflict": _TopicPool(
        emotions=("和家人冲突后的委屈与内疚", "不被理解的难过和压抑", "夹在中间的撕扯感"),
        causes=("期待不同，沟通方式冲突", "关心变成控制，缺少空间", "被卷入矛盾，害怕得罪人"),
        intents=("希望被理解，想学会沟通", "需要认可和设界限的建议"),
        strategies=("兼顾双方，肯定感受，建议平静沟通", "积极倾听，NURSE：理解与尊重"),
        openings=("和在乎的人起冲突，心里一定很难受。", "在家里不被理解，真的很压抑。", "既爱家人又想做自己，这种拉扯很累。"),
        bodies=("可以挑一个平静的时候，只谈一件具体的事。", "关心家人和设立界限，是可以同时存在的。", "多用“我感到……”来表达，对方更容易听进去。"),
    ),
    "relationships": _TopicPool(
        emotions=("失去感情后的伤心与思念", "害怕被抛下的不安", "被伤害后的委屈和困惑"),
        causes=("重要关系的结束或变化", "对拒绝的恐惧，放大细节", "需要没有被说出口"),
        intents=("希望伤痛被认可，想要建议", "渴望理解，想修复或放下"),
        strategies=("肯定伤痛，接纳节奏，建议自我照顾", "积极倾听，NURSE：命名情绪"),
        openings=("感情带来的伤痛可以很深，你的难过是真实的。", "在乎的人变得疏远，会不安是很自然的。", "走出一段感情需要时间，不用赶进度。"),
        bodies=("可以平静地说出自己的感受，从“我”开始。", "暂时少看对方的动态，也许会轻松一点。", "多和关心你的人待在一起，会更踏实。"),
    ),
    "loneliness": _TopicPool(
        emotions=("孤独和空落落的感觉", "不被理解的失落", "环境变化后的寂寞"),
        causes=("新环境中还缺少联系", "交往多停留在表面", "觉得别人都过得好，于是退缩"),
        intents=("希望被理解，想找到连接", "需要确认孤独是正常的"),
        strategies=("正常化孤独，建议小的社交步骤", "积极倾听，NURSE：支持与探索"),
        openings=("孤独的感觉真的很难熬，很多人都有过。", "身边有人却不被懂，这种感觉很难受。", "日子安静得空落落的，一定不好过。"),
        bodies=("可以参加一个固定的兴趣活动，慢慢认识人。", "先给一位朋友发条消息，是很好的开始。", "试着和信任的人多分享一点真实的想法。"),
    ),
    "grief": _TopicPool(
        emotions=("失去亲人后的悲伤与思念", "悲伤里夹杂着自责和遗憾", "突如其来的震惊与麻木"),
        causes=("至亲或宠物离世", "对过去的后悔，“早知道”的想法", "悲伤不被身边人理解"),
        intents=("希望丧失被看见和理解", "需要认可和温和的应对方式"),
        strategies=("承认丧失，正常化悲伤，邀请回忆", "积极倾听，NURSE：尊重与支持"),
        openings=("很遗憾你失去了重要的人，这份悲伤很沉重。", "失去所爱，心里的痛是很自然的。", "悲伤没有标准答案，也没有时间表。"),
        bodies=("可以写一封信，把想说的话告诉对方。", "这段时间请照顾好吃饭和睡眠。", "和同样爱着对方的人聊聊回忆，会好受些。"),
    ),
    "sleep": _TopicPool(
        emotions=("失眠带来的疲惫和烦躁", "夜里停不下来的担心", "睡不好后的焦虑无力"),
        causes=("睡前思绪多，作息不规律", "压力带到夜里，睡前看手机", "越怕睡不着越睡不着"),
        intents=("想要改善睡眠的具体建议", "希望疲惫被理解，也要方法"),
        strategies=("肯定疲惫，给出简单睡眠习惯", "积极倾听，NURSE：理解与支持"),
        openings=("长期睡不好真的很耗人，你的疲惫很正常。", "躺下后脑子停不下来，一定很烦。", "失眠会影响方方面面，难怪你这么累。"),
        bodies=("可以固定起床时间，睡前一小时放下手机。", "傍晚把担心写下来，让它们先放一放。", "躺下二十分钟睡不着，就起来做点安静的事。"),
    ),
    "anxiety": _TopicPool(
        emotions=("持续的担心和紧张", "面对场合时的心慌", "难以放松的不安"),
        causes=("把不确定当成危险，灾难化", "回避让恐惧持续", "过度关注自己，怕被评价"),
        intents=("希望被理解，想学会平静下来", "需要认可和可行的应对方法"),
        strategies=("正常化焦虑，教一个放松技巧", "积极倾听，NURSE：命名与支持"),
        openings=("一直处在担心里真的很累，你并不孤单。", "焦虑会让平常的事也变得可怕，这很不容易。", "总想到最坏的结果，会紧张是很自然的。"),
        bodies=("试着慢慢呼吸，呼气比吸气长一些。", "问问自己：最可能发生的是什么？", "从小的场合开始一步步面对，会比回避更有用。"),
    ),
    "low_mood": _TopicPool(
        emotions=("情绪低落，对事情失去兴趣", "说不清原因的难过和疲惫", "觉得停滞不前的无望感"),
        causes=("压力累积，逐渐退缩", "对自己苛刻，和别人比较", "生活缺少规律和乐趣"),
        intents=("希望被理解，而非被劝振作", "需要认可和温和的第一步"),
        strategies=("肯定感受，建议小步骤和就医", "积极倾听，NURSE：支持与探索"),
        openings=("情绪低落了这么久，一定很辛苦，这不是你的错。", "什么都提不起劲时，小事也会显得很难。", "能察觉到自己的变化，已经很不容易了。"),
        bodies=("可以从很小的事做起，比如出门走十分钟。", "如果持续两周以上，建议去看看医生。", "试着像对待生病的朋友一样耐心对待自己。"),
    ),
    "self_esteem": _TopicPool(
        emotions=("自我怀疑，觉得不如别人", "害怕被否定的羞愧", "对自己苛刻的不安"),
        causes=("总在比较，忽视自己的成绩", "早年的批评影响自我看法", "猜测别人想法，追求完美"),
        intents=("希望被认可，学会善待自己", "渴望理解和建立自信的方法"),
        strategies=("温和挑战自我批评，培养自我关怀", "积极倾听，NURSE：尊重与支持"),
        openings=("对自己这么苛刻一定很累，你值得被温柔对待。", "觉得自己不够好，真的很难受。", "那个批评自己的声音，并不是全部的你。"),
        bodies=("想想你会怎样安慰朋友，再这样对自己说。", "每天记下一件自己做得不错的小事。", "被夸奖时，先试着说一声“谢谢”。"),
    ),
    "parenting": _TopicPool(
        emotions=("作为父母的担心和无力", "照顾孩子的疲惫与内疚", "对孩子行为的着急"),
        causes=("孩子渐渐独立，沟通变难", "缺少休息和支持", "对自己要求过高"),
        intents=("希望被理解，想要育儿方法", "需要确认自己是用心的父母"),
        strategies=("肯定用心，建议先连接再立规矩", "积极倾听，NURSE：支持与探索"),
        openings=("带孩子真的很累，你的担心说明你很在乎。", "会内疚不代表你做得不好，而是你很用心。", "和孩子的沟通不顺，一定让你很着急。"),
        bodies=("可以先陪孩子做件轻松的事，再慢慢聊。", "请也给自己争取一些休息和帮助。", "和孩子一起商量规则，会减少对抗。"),
    ),
    "body_image": _TopicPool(
        emotions=("对外貌的羞愧和困扰", "害怕被看、被评价的焦虑", "围绕饮食和身材的自责"),
        causes=("过去被嘲笑，盯着缺点", "和理想化的形象比较", "把身材和自我价值绑在一起"),
        intents=("希望被接纳，减少自我批评", "渴望理解和温和的建议"),
        strategies=("肯定感受，把注意力转向身体功能", "积极倾听，NURSE：尊重与支持"),
        openings=("对自己的身体不满意，心里一定很难受。", "总担心别人的目光，真的很累。", "你的价值远不只是外表。"),
        bodies=("多留意身体为你做的事，而不只是它的样子。", "试着减少照镜子和比较的次数。", "如果饮食或身材的担心占据太多，可以找医生或咨询师。"),
    ),
    CRISIS_TOPIC: _TopicPool(
        emotions=("绝望与疲惫，存在自伤风险", "痛苦难忍，有轻生念头", "羞愧与无助，安全堪忧"),
        causes=("多重打击叠加，感到无望", "认为自己是负担的想法", "用自伤应对，缺少安全出口"),
        intents=("需要被倾听，更需要安全", "渴望理解，急需支持"),
        strategies=("直接关心安全，引导求助", "肯定痛苦，连接危机资源"),
        openings=("谢谢你说出来，我能感到你有多痛苦。", "我很担心你现在的安全。", "你的痛苦很真实，我很重视。"),
        bodies=("请立刻拨打当地急救电话或心理危机热线。", "如果可能伤害自己，请马上联系急救或危机热线。", "请现在就联系心理危机热线，或去最近的医院急诊。"),
    ),
}

_POOLS: dict[str, dict[str, _TopicPool]] = {"en": _EN, "zh": _ZH}

# Closing sentences of the answer: shared by all non-crisis topics, and a crisis-only set that
# turns the seeker towards people who can be with them.
_CLOSINGS: dict[str, tuple[str, ...]] = {
    "en": (
        "What feels hardest about it right now?",
        "You deserve support too, and you are not alone.",
        "Would you like to talk through a first step?",
        "Be as kind to yourself as you would be to a friend.",
    ),
    "zh": ("你愿意多说说吗？", "你值得被好好照顾。", "慢慢来，你并不孤单。", "需要的话，随时可以聊聊。"),
}
_CRISIS_CLOSINGS: dict[str, tuple[str, ...]] = {
    "en": (
        "Please also tell someone you trust and stay with them. You are not alone.",
        "Ask a trusted person to be with you; you deserve support.",
        "You do not have to face this alone; help is there.",
    ),
    "zh": ("也请让信任的人陪着你。", "你不必独自面对，你很重要。", "请告诉身边信任的人，你值得被帮助。"),
}

# Separator between the sentences of an answer.
_JOIN: dict[str, str] = {"en": " ", "zh": ""}


def load_seed_posts() -> list[dict[str, Any]]:
    """The bundled help-seeker posts (``empathy_rl/assets/seed_posts.jsonl``), one dict per line."""
    text = resources.files("empathy_rl.assets").joinpath(SEED_POSTS_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _query(post: dict[str, Any]) -> str:
    return f"{post['title']}\n{post['description']}"


def _pool(language: str, topic: str) -> _TopicPool:
    try:
        return _POOLS[language][topic]
    except KeyError:
        raise ValueError(f"no warm-start templates for language {language!r} and topic {topic!r}") from None


def _example(post: dict[str, Any], rng: random.Random) -> CoEExample:
    language = post["language"]
    crisis = post["topic"] == CRISIS_TOPIC
    pool = _pool(language, post["topic"])
    layers = (
        rng.choice(pool.emotions),
        rng.choice(pool.causes),
        rng.choice(pool.intents),
        rng.choice(pool.strategies),
    )
    closings = _CRISIS_CLOSINGS[language] if crisis else _CLOSINGS[language]
    answer = _JOIN[language].join((rng.choice(pool.openings), rng.choice(pool.bodies), rng.choice(closings)))
    return CoEExample(language=language, query=_query(post), layers=layers, answer=answer, crisis=crisis)


def build_examples(n: int, seed: int = 0) -> list[CoEExample]:
    """``n`` templated CoE examples, alternating Chinese and English (index 0 is Chinese).

    Deterministic for a given ``seed``. Each language's posts are visited in a seeded random
    order, reshuffled after every full pass, so all posts (crisis posts included) are used about
    equally often. These examples only teach the CoE structure to a tiny test model; the real SFT
    stage uses reviewed CoE data.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    posts = load_seed_posts()
    by_language: dict[str, list[dict[str, Any]]] = {
        lang: [p for p in posts if p["language"] == lang] for lang in LANGUAGES
    }
    for lang, items in by_language.items():
        if not items:
            raise ValueError(f"{SEED_POSTS_FILE} has no posts in language {lang!r}")
    queues: dict[str, list[dict[str, Any]]] = {lang: [] for lang in LANGUAGES}
    examples: list[CoEExample] = []
    for index in range(n):
        lang = LANGUAGES[index % len(LANGUAGES)]
        if not queues[lang]:
            queues[lang] = list(by_language[lang])
            rng.shuffle(queues[lang])
        examples.append(_example(queues[lang].pop(), rng))
    return examples


def encode_examples(examples: list[CoEExample], prompts, tokenizer, max_response_len: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids ending in EOS) per example, for supervised warm-start rows.

    `prompts` is the run's `rollout.prompts.PromptBuilder`: an over-long query is cut inside the user
    turn by the same rule as in rollout, so the chat template and its assistant header stay intact.
    Examples that the builder drops (`rollout.overlong_prompt=drop`) are left out.
    """
    eos = tokenizer.eos_token_id
    encoded = []
    for ex in examples:
        fitted = prompts.fit(ex.language, ex.query)
        if fitted is None:
            continue
        response = tokenizer(ex.response(), add_special_tokens=False)["input_ids"][: max_response_len - 1] + [eos]
        encoded.append((fitted[0], response))
    return encoded
