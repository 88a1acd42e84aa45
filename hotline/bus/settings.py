"""The ``[bus]`` settings section: which call-event bus this process uses (composed into the
whole settings by hotline.settings). Imports nothing of the hotline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class BusSettings(BaseModel):
    model_config = {"extra": "forbid"}

    kind: Literal["memory", "redis"] = "memory"
    """memory: the in-process bus (one process serves the hotline, ``make run``); redis: call
    events on a Redis stream, shared by every process of a cluster."""
    redis_url: str = Field("redis://127.0.0.1:6390/0", pattern=r"^(redis|rediss|unix)://")
    stream: str = Field("hotline:call-events", pattern=r"^[A-Za-z0-9:_.-]+$")
    """The stream every call event is added to; ``<stream>:dead`` holds entries no reader
    could take (garbled, or failing too often), for a person to look at."""
    maxlen: int = Field(1_000_000, ge=1000)
    """Entries the stream keeps, about (trimmed in whole nodes, so a little more): at ~40
    events a call, the last 25,000 calls. A consumer group further behind than this loses
    events: they are logged as trimmed."""
    claim_idle_s: float = Field(30.0, gt=0)
    """An event a group consumer took and has not acknowledged for this long is taken over
    by another (its consumer died or hangs)."""
    max_deliveries: int = Field(5, ge=1)
    """An event taken over this many times (its handler keeps failing) is moved aside to the
    dead stream instead of being tried again."""
    read_block_s: float = Field(2.0, gt=0, le=60)
    """How long one blocking read waits for new events before it reads again."""
    replay_s: float = Field(900.0, ge=0)
    """A web node starting reads the stream from this many seconds back (before its desks
    and wallboard go live), so the calls under way have their pops, with the IVR's steps,
    on a node started (or restarted) after they began; 0 starts at the stream's end."""
    control_lease_ms: int = Field(6000, ge=300, le=600_000)
    """How long the control lease lasts unrenewed (``<stream>:control-lease``, renewed every
    third of it): a ``--role control`` standby takes over from a dead holder within about
    this plus a third; two controls never both publish for longer than this."""
    journal_fsync: bool = False
    """Flush each published event to the disk before handing it on (survives a power cut,
    at a disk flush per event); the journal is always written before ``publish`` returns."""
