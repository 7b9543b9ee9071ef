"""The scheduler: the ``nbremind schedule`` service that runs jobs from the settings files and
watches expected runs, and the schedule maths it needs (``timing``: when a cron line or an
``every`` interval fires, in the job's time zone). A layer next to ``api`` and ``doctor``: it
uses ``runtime``, ``store``, ``settings`` and ``core``."""
