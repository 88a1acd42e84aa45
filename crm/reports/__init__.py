"""What supervisors and admins read: satisfaction reports and drill-down lists, SVG charts, a
resident's record, and the audit log search."""
