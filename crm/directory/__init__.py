"""Reference data kept by the hotline: departments, case categories, residents, agents
(CSV)."""
