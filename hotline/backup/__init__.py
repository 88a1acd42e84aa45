"""``hotline backup`` and ``hotline restore``: the database (a logical dump,
crm/storage/dump.py), call recordings, survey comments and settings in one archive with a
manifest and checksums (archive.py); create.py makes one, restore.py puts one back into an
empty installation."""
