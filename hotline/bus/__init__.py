"""The call-event bus of a hotline served by several processes: call events on a Redis
stream (redis_bus.py) behind the in-process bus's interface (crm.telephony.events.EventBus),
the project's own redis-server (redis_server.py), the ``[bus]`` settings (settings.py) and
``open_bus`` (factory.py), which picks the bus the settings name."""
