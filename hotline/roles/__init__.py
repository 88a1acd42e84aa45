"""The service's parts grouped by role, each built by one function that registers its own
shutdown on the caller's exit stack: storage (the database), control (the AMI link with
events and everything fed by it: call and queue trackers, the consultation recorder,
callbacks), ivr (speech and the AudioSocket media server), web (desk hub, wallboard, the
web app). ``hotline/service.py`` composes them: all of them in one process (``--role all``),
or a role per process over a networked bus (``--role core|web|control|ivr``)."""

from __future__ import annotations

from typing import Literal

Role = Literal["all", "core", "web", "control", "ivr"]
ROLES: tuple[Role, ...] = ("all", "core", "web", "control", "ivr")
"""all: one process serves everything (the in-process bus); core: control and ivr; web: the
desk, console and API; control: the AMI link, trackers, recorder and callbacks (one per
cluster); ivr: an IVR worker (speech and AudioSocket; any number, hotline/roles/split.py). A
role other than all needs ``[bus] kind = "redis"``."""
