"""A call event bus that keeps every CallStep published on it, for tests of what the IVR logs."""

from __future__ import annotations

from crm.telephony.events import CallEventBus, CallStep


def recording_bus() -> tuple[CallEventBus, list[CallStep]]:
    """A bus and the list its CallSteps are appended to, in publication order."""
    bus = CallEventBus()
    steps: list[CallStep] = []

    async def keep(event: object) -> None:
        if isinstance(event, CallStep):
            steps.append(event)
    bus.subscribe(keep)
    return bus, steps
