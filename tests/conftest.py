"""The suite's fixtures live in their own modules, loaded as plugins (each before the plugins
that import it); ``_guards`` fails any test that leaves a loop thread, a hook or a replaced
session behind."""

pytest_plugins = [
    "_guards",
    "_isolation",
    "_config_isolation",
    "_captured",
    "_jupyterlab",
    "_frontend_js",
    "_kernel",
    "_desktop_bus",
    "_servers",
]
