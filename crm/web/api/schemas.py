"""The open API's request bodies (pydantic): what the routes accept and the OpenAPI document
describes (crm.web.api.routes, crm.web.api.openapi)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crm.cases import service as cases

MAX_BODY_BYTES = 64 * 1024


class RequestBody(BaseModel):
    """A JSON request body: no unknown fields, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


_PHONE = rf"^{cases.PHONE_PATTERN.pattern}$"


class CaseCreate(RequestBody):
    category: str = Field(min_length=1, max_length=32, description="category code")
    description: str = Field(min_length=1, max_length=2000)
    contact_phone: str = Field(pattern=_PHONE)
    resident_phone: str | None = Field(
        None, pattern=_PHONE,
        description="links the case to the resident with this phone, when known")
    address: str | None = Field(None, max_length=256)


class CaseUpdate(RequestBody):
    stage: Literal[cases.STAGES] | None = None  # type: ignore[valid-type]
    note: str | None = Field(None, max_length=1000, description="internal note for the history")
    department: str | None = Field(None, min_length=1, max_length=32,
                                   description="department code to move the case to")
    latest_update: str | None = Field(
        None, max_length=1000, description="progress message the IVR reads to callers")


class DepartmentAccept(RequestBody):
    note: str | None = Field(None, max_length=1000)


class DepartmentReturn(RequestBody):
    reason: str = Field(min_length=1, max_length=1000,
                        description="why the case is not this department's")


class DepartmentExtension(RequestBody):
    until: AwareDatetime = Field(strict=False,
                                 description="the deadline asked for (ISO 8601 with offset)")
    reason: str = Field(min_length=1, max_length=1000)


class DepartmentReply(RequestBody):
    result: str = Field(min_length=1, max_length=1000,
                        description="the result; the IVR reads it to the caller")


class ReturnRuling(RequestBody):
    ruling: Literal["redispatch", "uphold"]
    department: str | None = Field(None, min_length=1, max_length=32,
                                   description="for redispatch: the department to send it to")
    note: str | None = Field(None, max_length=1000)


class ExtensionDecision(RequestBody):
    grant: bool
    note: str | None = Field(None, max_length=1000)
