"""Are two Chinese addresses the same place? For repeat requests (crm/cases/repeats.py).

Character n-gram similarity alone matches look-alikes: 幸福社区3号楼 and 幸福社区13号楼 share
almost every bigram, yet are different buildings. So an address is normalised and split in
two parts, compared differently:

- the numbers (road number 号, building 栋/幢/座/号楼, unit 单元, floor 层, room 室): each kind
  given on both sides must be equal (a kind given on one side only does not count against);
- the place names (province, city, district, street, community) left when the numbers are
  taken out: equal, one inside the other (a street given or left out), or else the Dice
  coefficient of their character bigrams, after dropping the administrative prefix (…省,
  …市, …区, …县) that every address of the hotline shares and the words that only say what
  kind of place it is (街道, 社区, 小区, 院…).

Normalisation: NFKC (full-width digits and letters), Chinese numerals to digits (三号楼, 十二
栋, 二〇一室), the many ways to write one kind (栋 幢 座 号楼 #楼 → building; 房 号房 → room),
spaces and punctuation removed. No maintained library does this part: jieba's segmentation
and rapidfuzz's ratios both see 3号楼 and 13号楼 as nearly the same string.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
           "七": 7, "八": 8, "九": 9}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百]+(?=[号栋幢座楼单元层室房户#-])")
_KINDS = (  # (kind, pattern of the number before its word); order matters: 号楼 before 号
    ("building", re.compile(r"([0-9]+)(?:号楼|栋|幢|座|#楼|#|号院楼)")),
    ("unit", re.compile(r"([0-9]+)单元")),
    ("floor", re.compile(r"([0-9]+)(?:层|楼(?![0-9]))")),
    ("room", re.compile(r"([0-9]+)(?:室|号房|房|户)")),
    ("number", re.compile(r"([0-9]+)号")),
    ("room", re.compile(r"(?<![0-9])([0-9]{3,4})$")),  # 3号楼2单元301: a bare room at the end
)
_DASHED = ((re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)"), r"\1号楼\2单元\3室"),  # 3-2-301
           (re.compile(r"([0-9]+)-([0-9]{3,4})(?![0-9])"), r"\1号楼\2室"))  # 5-301
_GENERIC = re.compile(r"街道办事处|街道|社区居委会|居委会|村委会|社区|小区|院")
_STREET_END = re.compile(r"(?<=..)街$")
"""和平街 is 和平街道 too (a street's name left once the generic words are gone)."""
"""Words that say what kind of place a name is, written or left out at will."""
_ADMIN_PREFIX = re.compile(r"^(?:.{2,8}?省)?(?:.{2,8}?市)?(?:.{1,6}?(?<![社小园校厂景])[区县])?")
"""Province, city, district; not 社区, 小区, 园区, 校区, 厂区, 景区 (a community's name)."""
_NOISE = re.compile(r"[\s,，.。、;；:：()（）\[\]【】\"'“”‘’/\\]+")


def _chinese_number(text: str) -> str:
    """一 -> 1, 十二 -> 12, 二十 -> 20, 一百零五 -> 105, 二〇一 -> 201 (digit by digit)."""
    if not any(c in text for c in "十百"):
        return "".join(str(_DIGITS[c]) for c in text)
    total, current = 0, 0
    for c in text:
        if c == "百":
            total += (current or 1) * 100
            current = 0
        elif c == "十":
            total += (current or 1) * 10
            current = 0
        else:
            current = _DIGITS[c]
    return str(total + current)


def normalise(address: str) -> str:
    text = unicodedata.normalize("NFKC", address).lower()
    text = _NOISE.sub("", text)
    text = _CN_NUMBER.sub(lambda m: _chinese_number(m[0]), text)
    for pattern, replacement in _DASHED:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True)
class Address:
    names: str
    """The place names with the numbers taken out and the administrative prefix dropped."""
    numbers: dict[str, str]

    @classmethod
    def parse(cls, address: str) -> Address:
        text = normalise(address)
        numbers: dict[str, str] = {}
        for kind, pattern in _KINDS:
            match = pattern.search(text)
            if match is None or kind in numbers:
                continue
            numbers[kind] = str(int(match[1]))
            text = text[:match.start()] + "|" + text[match.end():]
        names = text.replace("|", "").replace("-", "")
        names = _ADMIN_PREFIX.sub("", names) or names
        return cls(_STREET_END.sub("", _GENERIC.sub("", names)) or names, numbers)


def _bigrams(text: str) -> list[str]:
    return [text[i:i + 2] for i in range(len(text) - 1)] if len(text) > 1 else [text]


def name_similarity(a: str, b: str) -> float:
    """Dice coefficient of the character bigrams (with repeats), 0-1."""
    if not a or not b:
        return 0.0
    left, right = _bigrams(a), _bigrams(b)
    pool = list(right)
    shared = 0
    for gram in left:
        if gram in pool:
            pool.remove(gram)
            shared += 1
    return 2 * shared / (len(left) + len(right))


def similarity(a: str, b: str) -> float:
    """0 when a number of the same kind differs; else how alike the place names are."""
    first, second = Address.parse(a), Address.parse(b)
    for kind, value in first.numbers.items():
        if second.numbers.get(kind, value) != value:
            return 0.0
    if first.names and first.names == second.names:
        return 1.0
    # one address may give the community only, the other the street and the community too
    shorter, longer = sorted((first.names, second.names), key=len)
    if len(shorter) >= 3 and shorter in longer:
        return 0.9
    return name_similarity(first.names, second.names)
