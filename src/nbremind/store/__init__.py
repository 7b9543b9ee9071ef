"""SQLite files: the durable outbox, the run history, the process identity and the private
data folder. Uses only ``core``."""
