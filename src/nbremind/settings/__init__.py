"""Settings files, environment variables and their live reload. Uses only ``core``."""
