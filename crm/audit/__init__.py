"""Residents' data accountability: the audit log (who read or changed what) and retention (removing
data once it has been kept as long as the settings say)."""
