"""Address similarity for repeat requests (crm/cases/addresses.py): near-duplicates written
differently must match, look-alikes (another building, room, street) must not."""

from __future__ import annotations

import pytest

from crm.cases.addresses import Address, normalise, similarity

THRESHOLD = 0.7  # [repeat_requests] min_address_similarity's default

SAME_PLACE = [
    ("幸福社区3号楼2单元", "幸福社区三号楼二单元"),
    ("南京市鼓楼区幸福社区3栋201室", "幸福社区3号楼201"),
    ("幸福社区3-2-301", "幸福社区3号楼2单元301室"),
    ("和平街道8号院", "和平街8号院"),
    ("阳光花园小区５幢", "阳光花园5幢"),
    ("幸福社区 3号楼", "幸福社区3号楼2单元"),  # one gives the unit, the other does not
    ("中山路十二号", "中山路12号"),
    ("江苏省南京市玄武区中山路12号", "中山路12号"),
    ("南京市幸福社区三号楼二单元301", "幸福社区3号楼2单元301室"),  # 社区 is no district
]
LOOK_ALIKES = [
    ("幸福社区3号楼2单元", "幸福社区13号楼2单元"),
    ("幸福社区3号楼2单元301", "幸福社区3号楼2单元302"),
    ("幸福社区3号楼2单元", "幸福社区3号楼1单元"),
    ("和平街道8号院", "太平街道8号院"),
    ("阳光花园5幢", "阳光新村5幢"),
    ("中山路12号", "中山北路12号"),
    ("中山路12号", "中山路21号"),
    ("幸福社区3号楼", "幸福里3号楼"),
    ("南京市幸福社区3号楼", "南京市和平社区3号楼"),
]


@pytest.mark.parametrize(("a", "b"), SAME_PLACE)
def test_near_duplicates_match(a: str, b: str) -> None:
    assert similarity(a, b) >= THRESHOLD
    assert similarity(b, a) >= THRESHOLD


@pytest.mark.parametrize(("a", "b"), LOOK_ALIKES)
def test_look_alikes_do_not(a: str, b: str) -> None:
    assert similarity(a, b) < THRESHOLD
    assert similarity(b, a) < THRESHOLD


def test_an_address_is_split_into_names_and_numbers() -> None:
    assert normalise("幸福社区二〇一室") == "幸福社区201室"
    assert normalise("一百零五号") == "105号"
    parsed = Address.parse("南京市鼓楼区幸福社区十二栋3单元502室")
    assert parsed == Address("幸福", {"building": "12", "unit": "3", "room": "502"})
