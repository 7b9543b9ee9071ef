"""The public calls: ``remind()``, ``track()``, ``history()``. Uses ``runtime`` and below."""
