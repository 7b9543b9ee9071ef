"""SQLite files: the durable outbox, the run history and the scheduler's state (each a
:class:`~nbremind.store.sqlite.Database` in one shared file), the process identity and the
private data folder. Uses only ``core``."""
