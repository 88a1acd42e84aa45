"""The whole cluster on one machine (``hotline cluster up|down|status``, ``make run-cluster``):
Redis, PostgreSQL, the SIP edge and its media nodes, and the role processes listed in a plan
(plan.py) that is generated once under ``<state_dir>/cluster/`` and read back by every verb."""
