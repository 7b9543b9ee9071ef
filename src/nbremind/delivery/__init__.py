"""Delivery: the channel port, the dispatcher (rules, quiet hours, retry, fan-out) and the
replay of the outbox. Uses ``core``, ``settings`` and ``store``; channels are handed to it."""
