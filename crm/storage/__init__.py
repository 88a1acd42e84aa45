"""Where the CRM keeps things: the database (engine, tables, migrations), the journal of writes the
database refused, files private to the service, and call recordings on disk."""
