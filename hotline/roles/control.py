"""The control part: the AMI link with events and what is fed by it or must happen once for
the whole hotline: the consultation recorder, the call and queue trackers, queue position
announcements, the missed-call watcher and the callback scheduler, return visits, the
departments' due-soon and overdue reminders (crm/cases/reminder_timer.py) and retention."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from crm.audit.retention import RetentionFiles
from crm.callbacks.dialing import CallbackScheduler
from crm.callbacks.watcher import MissedCallWatcher
from crm.cases.reminder_timer import ReminderRun, reminder_timer
from crm.consultations.recorder import (
    ConsultationRecorder,
    OpenCall,
    open_calls,
    recorder_journal,
)
from crm.storage.db import SessionFactory
from crm.telephony.events import EventBus
from hotline.edge.nodes import linked_node_settings
from hotline.paths import recording_store, survey_comments_dir
from hotline.reconciliation import call_record_path, reconcile_open_calls
from hotline.retention import RetentionSchedule, retention_loop
from hotline.roles.node_links import queue_node_linked
from hotline.settings import Settings, hotline_queues
from hotline.surveys import return_visit_loop
from ivr.ami.client import AmiClient
from ivr.asterisk.call_records import CallRecordReader
from ivr.asterisk.call_tracker import ActiveCall, CallTracker
from ivr.asterisk.callback_dialer import AmiCallbackDialer
from ivr.asterisk.queue_announcements import QueueAnnouncements
from ivr.asterisk.queue_tracker import QueueTracker

PlaceLeftOpen = Callable[[list[OpenCall]], Awaitable[list[OpenCall]]]


class WatchCalls(Protocol):
    """How the missed-call watcher gets its events other than by a subscription."""

    async def settle(self) -> None: ...

    async def join(self, stack: contextlib.AsyncExitStack,
                   watcher: MissedCallWatcher) -> None: ...


STARTUP_REPLAY_WAIT = 10.0
"""Seconds start-up waits for journaled call events to be written before it reads which
calls are still open."""


async def start_recorder(stack: contextlib.AsyncExitStack, settings: Settings,
                         sessions: SessionFactory, bus: EventBus) -> ConsultationRecorder:
    """The consultation recorder, subscribed first: it writes every call event, journaled
    until the database has it."""
    journal = recorder_journal(settings.state_dir / "journal")
    stack.callback(journal.close)
    recorder = ConsultationRecorder(sessions, journal=journal)
    bus.subscribe(recorder.handle)
    recorder.start()
    stack.push_async_callback(recorder.close)
    return recorder


@dataclass
class Control:
    ami: AmiClient
    tracker: CallTracker
    queue_tracker: QueueTracker
    callback_dialer: AmiCallbackDialer
    callbacks: CallbackScheduler
    callback_watcher: MissedCallWatcher


async def start_control(stack: contextlib.AsyncExitStack, settings: Settings,
                        sessions: SessionFactory, bus: EventBus,
                        recorder: ConsultationRecorder, *,
                        settle: Callable[[], Awaitable[None]] | None = None,
                        place_left_open: PlaceLeftOpen | None = None,
                        watch: WatchCalls | None = None,
                        start_callbacks: bool = True) -> Control:
    """The AMI link with its trackers (logged in here: subscribe live state to ``bus``
    before, so the first QueueSnapshot reaches it) and the callbacks. ``settle`` waits
    until the call events received so far are written (default: this process's recorder;
    in a cluster, every recorder: hotline/roles/recorded_mark.py). ``place_left_open``
    (in a cluster: hotline/roles/left_open.py) takes the calls left open and returns the
    share of this link's tracker (default: all of them). ``watch`` feeds the missed-call
    watcher the events instead of a subscription (in a cluster: its consumer group,
    hotline/roles/callback_watcher_member.py), with its own ``settle``. ``start_callbacks``
    False: the caller starts the callback scheduler (a cluster: once the dialer knows the
    queue nodes, where it looks for placeholders left by the last run)."""
    settle = settle or recorder.drain
    ami = AmiClient(settings.ami)
    own_node = linked_node_settings(settings)  # whose channel event record is read
    tracker = CallTracker(ami, bus, records=CallRecordReader(call_record_path(own_node)))
    # Calls a previous run left open (once the journal's replay is written): those
    # Asterisk's channel event record saw end are closed as it recorded them; the first
    # resynchronisation closes the others that ended while no service was running.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STARTUP_REPLAY_WAIT):
            await recorder.drain()
    left_open = await open_calls(sessions)
    reconciled = await reconcile_open_calls(own_node, sessions, left_open)
    left_open = [c for c in left_open if c.call_id not in reconciled]
    if place_left_open is not None:
        left_open = await place_left_open(left_open)
    tracker.adopt(ActiveCall(c.call_id, c.channel, c.caller_number, c.caller_name)
                  for c in left_open)
    queue_tracker = QueueTracker(ami, bus, queues=hotline_queues(settings),
                                 members=not queue_node_linked(settings))
    announcements = QueueAnnouncements(
        ami, bus, main_queue=settings.asterisk.queue_name,
        announce_position=settings.queue_wait.announce_position)
    stack.callback(announcements.close)
    callback_dialer = AmiCallbackDialer(ami, settings.callbacks,
                                        hotline_number=settings.asterisk.hotline_number)
    await ami.start()
    stack.push_async_callback(ami.close)
    stack.callback(callback_dialer.close)
    callbacks = CallbackScheduler(callback_dialer, sessions, bus, settings.callbacks,
                                  queue=settings.asterisk.queue_name, settle=settle)
    callback_watcher = MissedCallWatcher(sessions, bus, settings.callbacks,
                                         settle=watch.settle if watch else settle,
                                         on_created=callbacks.wake,
                                         on_closed=callbacks.withdraw)
    stack.push_async_callback(callback_watcher.close)
    if watch is None:
        bus.subscribe(callback_watcher.handle)
    else:
        await watch.join(stack, callback_watcher)
    if settings.callbacks.enabled and start_callbacks:  # else the caller starts them
        callbacks.start()
    stack.push_async_callback(callbacks.close)
    return Control(ami, tracker, queue_tracker, callback_dialer, callbacks, callback_watcher)


async def start_schedules(stack: contextlib.AsyncExitStack, settings: Settings,
                          sessions: SessionFactory, ami: AmiClient, *,
                          on_reminders: Callable[[ReminderRun], None] | None = None
                          ) -> RetentionSchedule | None:
    """Return visits (their surveys need the IVR up), the departments' reminders (each pass
    told to ``on_reminders``) and retention; the retention schedule (None when off)."""
    await stack.enter_async_context(return_visit_loop(settings, ami, sessions))
    await stack.enter_async_context(reminder_timer(sessions, settings.dispatch,
                                                   on_run=on_reminders))
    return await stack.enter_async_context(retention_loop(
        settings, sessions, RetentionFiles(recording_store(settings),
                                           survey_comments_dir(settings))))
