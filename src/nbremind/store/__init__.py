"""SQLite files: the durable outbox and the run history (each a
:class:`~nbremind.store.sqlite.Database` in one shared file), the process identity and the
private data folder. Uses only ``core``."""
