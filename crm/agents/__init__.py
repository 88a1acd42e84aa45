"""Agents, supervisors and admins: accounts, passwords and roles, browser sessions, sign-in
throttling, and the open API's bearer tokens."""
