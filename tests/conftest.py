"""Shared fixtures; component fixtures live in their own modules and are re-exported here."""

from __future__ import annotations

from _config_isolation import _repository_has_no_settings, isolated_settings  # noqa: F401
from _desktop_bus import bare_bus, desktop_bus  # noqa: F401
from _frontend_js import widget_browser, widget_page  # noqa: F401
from _isolation import nbremind_data_dir  # noqa: F401
from _jupyterlab import chromium, lab, lab_server  # noqa: F401
from _kernel import kernel, kernel_factory, remind_kernel  # noqa: F401
from _servers import http_server, smtp_factory, tls_cert  # noqa: F401
