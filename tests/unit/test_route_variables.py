"""The variables the dialplan routes a caller by go to AMI back to back, not one round trip
after another (ivr.asterisk.call_tracker.set_route_variables)."""

import asyncio

from ivr.asterisk.call_tracker import set_route_variables


class AnswersWhenAllSent:
    """An AMI link that answers no Setvar until ``expected`` of them were sent: code that
    waits for each answer before sending the next never finishes."""

    def __init__(self, expected: int) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.expected = expected
        self.all_sent = asyncio.Event()

    async def setvar(self, channel: str, variable: str, value: str) -> None:
        self.sent.append((channel, variable, value))
        if len(self.sent) == self.expected:
            self.all_sent.set()
        await self.all_sent.wait()


async def test_the_queue_language_and_route_are_sent_together_in_order() -> None:
    ami = AnswersWhenAllSent(3)
    async with asyncio.timeout(5):
        await set_route_variables(ami, "PJSIP/sipp-1", "agent", "hotline-ko", "ko")  # type: ignore[arg-type]
    assert ami.sent == [("PJSIP/sipp-1", "HOTLINE_QUEUE", "hotline-ko"),
                        ("PJSIP/sipp-1", "HOTLINE_LANGUAGE", "ko"),
                        ("PJSIP/sipp-1", "IVR_ROUTE", "agent")]


async def test_a_hang_up_route_sets_only_the_route() -> None:
    ami = AnswersWhenAllSent(1)
    async with asyncio.timeout(5):
        await set_route_variables(ami, "PJSIP/sipp-2", "hangup", None, None)  # type: ignore[arg-type]
    assert ami.sent == [("PJSIP/sipp-2", "IVR_ROUTE", "hangup")]
