"""Consultations: one record per call, written from call events, and what the agent desk adds
to it."""
