"""A generated customer archive for the demo, deterministic by seed and safe to run twice.

Beside ~1000 generated customers it holds the callers of the recorded AMI traces and of the
demo's replays (``crm_bridge/demo/feed.py``), so the demo shows a known caller (张三 on
13800138000) and a family phone shared by two customers (13700137000: 李四 and 李小四); its
unknown caller (13912345678) is in no card. Generated mobiles never start with 137, 138 or 139,
so they cannot collide with those.

:func:`seed_demo_work` adds what the demo's users work with beyond the archive: a running
preview campaign of return visits (老客户回访) that the agent dials from ``/me/campaigns``, and
the watch word the demo's customer says (:data:`WATCH_WORDS`, in the speech model's language).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.campaigns import store as campaigns
from crm_bridge.customers.numbers import normalize_phone
from crm_bridge.db.models import (
    Campaign,
    Complaint,
    Customer,
    CustomerPhone,
    Purchase,
    VisitRecord,
    WatchWord,
)
from crm_bridge.supervision.flags import add_watch_word

CENTER_ZONE = ZoneInfo("Asia/Shanghai")

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏"
    "魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵"
)
GIVEN_MALE = "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林建国志文斌博昊然晨阳海峰"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀燕玲桂丹萍红琳莉雪梅洁晶欣怡婷慧倩颖琪佳悦雯璐露月兰凤英华"
EMPLOYERS = (
    "市第一人民医院",
    "市实验中学",
    "华润万家超市",
    "中国银行深圳分行",
    "腾飞电子科技有限公司",
    "南方电网供电局",
    "市公安局",
    "海天物流有限公司",
    "城建集团",
    "自由职业",
    "退休",
)
WORK_DEPARTMENTS = ("财务部", "人事部", "销售部", "技术部", "行政部", "市场部", "生产部", "客服部")
SERVICE_DEPARTMENTS = {
    "内科": (("门诊诊疗", "慢病复查", "输液治疗", "中药调理"), 80, 1500),
    "外科": (("清创缝合", "小手术", "术后换药", "骨折复位"), 200, 8000),
    "眼科": (("验光配镜", "白内障手术", "眼底检查", "角膜塑形镜"), 150, 12000),
    "齿科": (("洗牙", "补牙", "根管治疗", "种植牙", "牙齿矫正"), 120, 20000),
    "体检中心": (("基础体检套餐", "入职体检", "深度体检套餐", "肿瘤筛查"), 300, 5000),
}
VIP_LEVELS = (("普通", 60), ("银卡", 25), ("金卡", 12), ("钻石", 3))
TAGS = (
    "老客户",
    "高血压",
    "糖尿病",
    "孕产",
    "儿童",
    "种植牙",
    "近视",
    "体检套餐",
    "积分兑换",
    "家属",
)
MOBILE_PREFIXES = tuple(
    str(prefix)
    for prefix in (130, 131, 132, 133, 135, 136, 147, 150, 151, 152, 153, 155, 156, 157, 158)
    + (159, 176, 177, 180, 181, 182, 183, 185, 186, 187, 188, 189, 191, 198, 199)
)
"""Generated mobiles; 137, 138 and 139 are left to the trace callers."""
AREA_CODES = ("010", "021", "020", "0755", "0571", "028", "027", "025")
OVERSEAS_ZONES = ("America/Vancouver", "America/Los_Angeles", "Europe/London", "Australia/Sydney")
AGENTS = ("客服小王", "客服小李", "客服小陈", "客服小周")
VISIT_PLACES = {"phone": "电话回访", "in_person": "门诊大厅", "wechat": "微信", "sms": "短信"}
OPINIONS = (
    "服务态度很好，医生讲解耐心",
    "效果满意，会推荐给家人",
    "等候时间太长，希望改进",
    "停车不方便",
    "价格偏高，但质量不错",
    "前台接待热情",
    "复诊提醒很及时",
    "希望周末也能预约",
    "环境干净整洁",
    "对治疗效果还在观察",
)
SUGGESTIONS = (
    "增加线上预约时段",
    "缩短排队时间",
    "增加停车位",
    "提供更详细的费用清单",
    "节假日增加医生排班",
)
COMPLAINTS = (
    "收费与报价不一致，要求解释",
    "预约时间被临时取消，未提前通知",
    "医生迟到四十分钟",
    "术后疼痛，回访电话一直没人接",
    "配的眼镜度数不对",
    "积分没有到账",
)
RESOLUTIONS = ("已电话致歉并退还差价", "已重新安排预约", "已安排主任复诊", "已补发积分")


@dataclass(slots=True)
class _Person:
    card_no: str
    name: str
    gender: str
    phones: list[tuple[str, str]]  # (number as typed, kind)
    birthday: date | None = None
    lunar: tuple[int, int] | None = None
    employer: str | None = None
    department: str | None = None
    vip_level: str = "普通"
    tags: list[str] = field(default_factory=list)
    consent: bool = True
    timezone: str | None = None
    open_complaint: str | None = None


def seed_demo(
    session_factory: sessionmaker[Session],
    count: int = 1000,
    seed: int = 42,
    today: date | None = None,
) -> int:
    """Add the demo archive (``count`` customers in all); return how many were added.

    Customers already there (by card number) are left alone, so a second run adds nothing.
    ``today`` (default: today in China) decides whose birthday is today and how old the
    purchases, visits and complaints are.
    """
    today = today or datetime.now(CENTER_ZONE).date()
    rng = random.Random(seed)
    people = _trace_people(today)
    people += _generated_people(rng, max(0, count - len(people)), today)
    customers = [_customer(person, rng, today) for person in people]
    with session_factory.begin() as session:
        existing = set(
            session.scalars(
                select(Customer.card_no).where(Customer.card_no.in_([p.card_no for p in people]))
            )
        )
        new = [customer for customer in customers if customer.card_no not in existing]
        session.add_all(new)
    return len(new)


PREVIEW_CAMPAIGN = "老客户回访"
PREVIEW_CUSTOMERS = ("C10086", "C10087", "C10088", "C10089", "C10001", "C10002", "C10003")
"""The preview campaign's customers, called in this order (some each demo run)."""
WATCH_WORDS = {"zh": "交易", "ko": "아울러"}
"""The demo's watch word: a word of the sentence its customer says (``demo/speech/``)."""
SEEDED_BY = "demo"


def seed_demo_work(session_factory: sessionmaker[Session], zone: ZoneInfo, region: str,
                   language: str) -> None:  # fmt: skip
    """The preview campaign and the watch word, each added once (a second run adds nothing)."""
    with session_factory.begin() as session:
        if session.scalar(select(Campaign.id).where(Campaign.name == PREVIEW_CAMPAIGN)) is None:
            campaign = Campaign(
                name=PREVIEW_CAMPAIGN,
                kind="return_visit",
                mode="preview",
                policy={"start": "00:00", "end": "00:00"},
                rules=[{"kind": "uploaded", "entries": list(PREVIEW_CUSTOMERS)}],
                created_by=SEEDED_BY,
            )
            session.add(campaign)
            session.flush()
            campaigns.start_campaign(session, campaign.id, datetime.now(UTC), zone, region)
        word = WATCH_WORDS[language]
        if session.scalar(select(WatchWord.id).where(WatchWord.word == word)) is None:
            add_watch_word(session, word, by=SEEDED_BY)


def _trace_people(today: date) -> list[_Person]:
    """The callers of the recorded traces (telephony/traces/README.md), with fixed card numbers."""
    family_phone = [("13700137000", "home")]
    return [
        _Person(
            "C10000",
            "张三",
            "M",
            [("13800138000", "mobile"), ("010-62345678", "work")],
            birthday=_birthday_on(today, 1985),
            employer="腾飞电子科技有限公司",
            department="技术部",
            vip_level="金卡",
            tags=["老客户", "种植牙"],
            open_complaint="种植牙术后一周仍有疼痛，希望医生回电",
        ),
        _Person("C10001", "王芳", "F", [("13800138001", "mobile")], date(1990, 5, 20)),
        _Person("C10002", "刘洋", "M", [("13800138002", "mobile")], date(1978, 11, 2)),
        _Person("C10003", "陈静", "F", [("13800138003", "mobile")], lunar=(8, 15)),
        _Person("C10004", "杨磊", "M", [("13800138004", "mobile")], date(1969, 1, 9)),
        _Person("C10005", "赵敏", "F", [("13800138005", "mobile")], date(2001, 7, 30)),
        _Person(
            "C10086",
            "黄丽",
            "F",
            [("13900000001", "mobile")],
            date(1958, 3, 12),
            vip_level="钻石",
            tags=["体检套餐"],
        ),
        _Person("C10087", "周强", "M", [("13900000002", "mobile")], date(1982, 9, 1)),
        _Person("C10088", "吴婷", "F", [("13900000003", "mobile")], date(1995, 2, 14)),
        _Person("C10089", "徐明", "M", [("13900000004", "mobile")], date(1974, 6, 18)),
        _Person("C20001", "李四", "M", [("13700137001", "mobile"), *family_phone], lunar=(1, 15)),
        _Person("C20002", "李小四", "M", family_phone, date(2012, 4, 1), tags=["儿童", "家属"]),
    ]


def _generated_people(rng: random.Random, count: int, today: date) -> list[_Person]:
    taken: set[str] = set()
    return [_generated_person(rng, number, today, taken) for number in range(1, count + 1)]


def _generated_person(rng: random.Random, number: int, today: date, taken: set[str]) -> _Person:
    gender = rng.choice("MF")
    given = GIVEN_MALE if gender == "M" else GIVEN_FEMALE
    name = rng.choice(SURNAMES) + "".join(rng.choice(given) for _ in range(rng.choice((1, 2, 2))))
    phones = [(_unique_mobile(rng, taken), "mobile")]
    if rng.random() < 0.3:
        phones.append((rng.choice(AREA_CODES) + str(rng.randint(2, 8)) + _digits(rng, 7), "home"))
    person = _Person(f"D{number:06d}", name, gender, phones)
    _add_birthday(person, rng, today)
    if rng.random() < 0.85:
        person.employer = rng.choice(EMPLOYERS)
        person.department = rng.choice(WORK_DEPARTMENTS)
    person.vip_level = rng.choices([v for v, _ in VIP_LEVELS], [w for _, w in VIP_LEVELS])[0]
    person.tags = rng.sample(TAGS, rng.choice((0, 0, 1, 1, 2)))
    person.consent = rng.random() < 0.95
    if rng.random() < 0.02:
        person.timezone = rng.choice(OVERSEAS_ZONES)
    return person


def _add_birthday(person: _Person, rng: random.Random, today: date) -> None:
    """2% have their birthday today, 10% keep a lunar birthday, a few gave none."""
    roll = rng.random()
    if roll < 0.02:
        person.birthday = _birthday_on(today, rng.randint(1950, 2005))
    elif roll < 0.12:
        person.lunar = (rng.randint(1, 12), rng.randint(1, 30))
    elif roll < 0.97:
        person.birthday = date(rng.randint(1940, 2008), 1, 1) + timedelta(days=rng.randint(0, 364))


def _birthday_on(today: date, year: int) -> date:
    """A birthday falling on ``today``; a 29 February one goes to a leap year."""
    if (today.month, today.day) == (2, 29):
        year -= year % 4
    return date(year, today.month, today.day)


def _unique_mobile(rng: random.Random, taken: set[str]) -> str:
    while True:
        mobile = rng.choice(MOBILE_PREFIXES) + _digits(rng, 8)
        if mobile not in taken:
            taken.add(mobile)
            return mobile


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def _customer(person: _Person, rng: random.Random, today: date) -> Customer:
    customer = Customer(
        card_no=person.card_no,
        name=person.name,
        gender=person.gender,
        birthday=person.birthday,
        lunar_birthday=person.lunar is not None,
        lunar_birth_month=person.lunar[0] if person.lunar else None,
        lunar_birth_day=person.lunar[1] if person.lunar else None,
        employer=person.employer,
        department=person.department,
        vip_level=person.vip_level,
        tags=person.tags,
        consent_to_calls=person.consent,
        timezone=person.timezone,
    )
    for raw, kind in person.phones:
        e164 = normalize_phone(raw).e164
        if e164 is not None:
            customer.phones.append(CustomerPhone(number_e164=e164, kind=kind))
    customer.purchases = _purchases(rng, today)
    customer.visits = _visits(rng, today)
    customer.complaints = [_complaint(rng, today)] if rng.random() < 0.06 else []
    if person.open_complaint:
        customer.complaints.append(
            Complaint(
                received_at=_moment(rng, today, 3),
                content=person.open_complaint,
                status="open",
                handler=AGENTS[0],
            )
        )
    return customer


def _purchases(rng: random.Random, today: date) -> list[Purchase]:
    purchases = []
    for _ in range(rng.choice((0, 1, 1, 2, 3, 4, 5, 8))):
        department = rng.choice(list(SERVICE_DEPARTMENTS))
        items, low, high = SERVICE_DEPARTMENTS[department]
        amount = Decimal(rng.randint(low * 100, high * 100)) / 100
        purchases.append(
            Purchase(
                purchased_on=today - timedelta(days=rng.randint(0, 730)),
                department=department,
                amount=amount,
                items="、".join(rng.sample(items, rng.choice((1, 1, 2)))),
            )
        )
    return purchases


def _visits(rng: random.Random, today: date) -> list[VisitRecord]:
    visits = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        channel = rng.choices(list(VISIT_PLACES), [60, 25, 10, 5])[0]
        visits.append(
            VisitRecord(
                visited_at=_moment(rng, today, rng.randint(1, 365)),
                place=VISIT_PLACES[channel],
                channel=channel,
                opinions=rng.choice(OPINIONS),
                suggestions=rng.choice(SUGGESTIONS) if rng.random() < 0.4 else None,
                visited_by=rng.choice(AGENTS),
            )
        )
    return visits


def _complaint(rng: random.Random, today: date) -> Complaint:
    status = rng.choice(("open", "open", "in_progress", "resolved", "closed"))
    done = status in ("resolved", "closed")
    received = _moment(rng, today, rng.randint(8 if done else 1, 90))
    return Complaint(
        received_at=received,
        content=rng.choice(COMPLAINTS),
        status=status,
        handler=rng.choice(AGENTS),
        resolution=rng.choice(RESOLUTIONS) if done else None,
        escalated_to="客服主管" if rng.random() < 0.3 else None,
        resolved_at=received + timedelta(days=rng.randint(1, 7)) if done else None,
    )


def _moment(rng: random.Random, today: date, days_ago: int) -> datetime:
    """A time during opening hours (China) ``days_ago`` days before ``today``, in UTC."""
    local = datetime.combine(
        today - timedelta(days=days_ago),
        time(rng.randint(8, 17), rng.randint(0, 59)),
        tzinfo=CENTER_ZONE,
    )
    return local.astimezone(UTC)
