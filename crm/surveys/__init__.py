"""Satisfaction surveys: who is asked, what they answered, writes kept while the database is down,
and return visits (outbound survey calls for resolved cases)."""
