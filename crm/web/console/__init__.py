"""The supervisor console under /console: sign-in, wallboard and dashboard, records and their
exports, recordings."""
