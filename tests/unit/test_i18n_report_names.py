"""Names the console's report pages show for codes and figures, in both languages: every
prompt the IVR can play (the path on a call's record), every service-level figure (with its
seconds from the settings), and the seconds unit the figures are shown in."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm.i18n.catalogs import translator
from crm.i18n.labels import LABELS
from crm.i18n.phrases import Phrase
from crm.reports import service_levels as levels
from crm.settings import ServiceLevelSettings
from tests.zh_pages import not_chinese

PACKS = Path(__file__).resolve().parents[2] / "speech" / "language_packs"


@pytest.mark.parametrize("pack", sorted(p.name for p in PACKS.glob("*.toml")))
def test_every_prompt_of_the_language_packs_has_a_name(pack: str) -> None:
    prompts = tomllib.loads((PACKS / pack).read_text(encoding="utf-8"))["prompts"]
    assert set(prompts) <= set(LABELS["prompt"]), set(prompts) - set(LABELS["prompt"])


def test_the_figures_are_named_in_each_reader_s_language() -> None:
    settings = ServiceLevelSettings(answer_within_s=15, short_abandon_s=5)
    zh, en = translator("zh_CN"), translator("en")
    names = {f.key: (zh.phrase(levels.figure_phrase(f, settings)),
                     en.phrase(levels.figure_phrase(f, settings))) for f in levels.FIGURES}
    assert names["answered_within_rate"] == ("及时接听率（15 秒内）", "Answered within 15 s")
    assert names["abandoned_short"][1] == "Abandoned under 5 s"
    for key, (chinese, english) in names.items():
        assert not not_chinese(chinese), (key, chinese)
        assert chinese != english, key
    wait = next(f for f in levels.FIGURES if f.key == "wait_p90_s")
    assert levels.display(wait, 40, zh.gettext("s")) == "40.0 秒"
    assert levels.display(wait, 40) == "40.0 s"  # the API's and the CSV's
    start = datetime(2026, 11, 22, tzinfo=UTC)
    found = levels.figures(start, start + timedelta(days=1), [], [], [], settings)
    first = levels.figures_json(found, settings)["figures"][0]  # the wallboard's
    assert first["label"] == "Calls offered"  # English, as the API gives it
    assert zh.phrase(Phrase.from_json(first["name"])) == "呼入量"
