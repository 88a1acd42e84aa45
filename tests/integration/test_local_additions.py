"""Issue 17: the operator's own dialplan, added in the local include file, answers after
``hotline asterisk up`` (a reload of the running test bed), and rendering leaves it alone."""

from __future__ import annotations

import pytest

from hotline.asterisk import up
from hotline.asterisk.layout import Installation, chroot_installation
from hotline.asterisk.local_config import LOCAL_DIR
from hotline.settings import Settings
from hotline.tools.sipp import place_call

pytestmark = [pytest.mark.asterisk, pytest.mark.timeout(120)]

EXTENSION = "7777"
LOCAL_DIALPLAN = f"""
; an operator's test line
[hotline-inbound]
exten => {EXTENSION},1,Answer()
 same => n,Echo()
"""


async def test_a_local_extension_answers_after_up_and_survives_it(
    asterisk_bed: Settings,
) -> None:
    settings = asterisk_bed
    inst = (Installation.load(settings.state_dir)
            or chroot_installation(settings.asterisk.root_dir))
    local = inst.etc_dir / LOCAL_DIR / "extensions_local.conf"
    original = local.read_text()

    async def dial() -> bool:
        call = await place_call(settings, caller_number="13900139000", dial=EXTENSION,
                                hold_ms=1000, answer_timeout_ms=3000)
        return call.answered

    assert not await dial()  # not part of the hotline's dialplan
    local.write_text(original + LOCAL_DIALPLAN)
    try:
        up(settings, progress=lambda message: None)
        assert local.read_text() == original + LOCAL_DIALPLAN
        assert await dial()
    finally:
        local.write_text(original)
        up(settings, progress=lambda message: None)
    assert not await dial()
