"""What Prometheus scrapes of the CRM: the call figures counted from the call-event bus
(calls.py), the database's errors (database_errors.py). Registries are the caller's, never
prometheus_client's global one."""
