"""How the CRM has a resident called for a return visit: through a dialer the composition
root hands in (ivr.asterisk.dialer.ReturnVisitDialer places the call with Asterisk). The CRM
keeps the bookkeeping (crm.surveys.return_visits); a dialer only rings the resident and says
how the call went."""

from __future__ import annotations

from typing import Protocol


class Dialer(Protocol):
    async def dial(self, phone: str, *, visit_id: int, survey_call_id: str) -> tuple[str, str]:
        """Ring ``phone`` for return visit ``visit_id``; once answered, the call is the survey
        leg ``survey_call_id``. Returns (outcome, detail) when the telephone side knows how
        the call went: outcome answered, no_answer, busy or failed (a call that could not
        even be placed is failed, never an exception)."""
        ...
