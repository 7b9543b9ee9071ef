"""nbremind's widget front end (``static/nbremind.js``) in real headless Chromium, without
JupyterLab: the module is imported into a blank page and driven through a stand-in for the
anywidget model (``get``/``set``/``on``/``off``/``send``/``save_changes``), so a test can
play the kernel's side exactly (state changes, custom messages) and read the DOM it makes.

``widget_page`` (per test) is such a page; ``window.Notification`` is replaced by a recorder
whose permission the test sets (``window.__permission``) and whose constructions it reads
(``window.__notifications``). ``widget_browser`` (per module) is the Chromium behind it: its
own Playwright, stopped after the module, because Playwright's sync API marks an asyncio
loop as running in the main thread while it is started (``asyncio.run`` fails meanwhile).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest

from _jupyterlab import CHROMIUM, CHROMIUM_ARGS
from _require import missing

__all__ = [
    "ESM",
    "RECORDER",
    "SPACER",
    "WATCH",
    "WHERE",
    "clicking_page",
    "widget_browser",
    "widget_page",
]

#: The module as installed with the package.
ESM = files("nbremind.ipython") / "static" / "nbremind.js"

_HARNESS = """
window.__notifications = [];
window.__permission = "granted";
window.__asked = 0;
window.Notification = class {
  constructor(title, options) { window.__notifications.push({ title, options }); }
  static get permission() { return window.__permission; }
  static requestPermission() { window.__asked += 1; return Promise.resolve(window.__permission); }
};
class FakeModel {
  constructor(state) {
    this.state = { ...state }; this.handlers = {}; this.sent = []; this.saved = 0;
  }
  get(key) { return this.state[key]; }
  set(key, value) { this.state[key] = value; }
  on(event, handler) { (this.handlers[event] ||= []).push(handler); }
  off(event, handler) {
    this.handlers[event] = (this.handlers[event] || []).filter((h) => h !== handler);
  }
  send(content) { this.sent.push(JSON.parse(JSON.stringify(content))); }
  save_changes() { this.saved += 1; }
  // the kernel's side
  update(state) {
    Object.assign(this.state, state);
    for (const key of Object.keys(state)) for (const h of this.handlers[`change:${key}`] || []) h();
  }
  custom(content) { for (const h of this.handlers["msg:custom"] || []) h(content, []); }
  listeners() { return Object.values(this.handlers).reduce((n, hs) => n + hs.length, 0); }
}
window.FakeModel = FakeModel;
window.__models = [];
window.__views = [];
/** A model as the kernel opened it: initialize() ran (once per model, as anywidget does). */
window.openModel = (state) => {
  const model = new FakeModel(state);
  model.cleanup = window.__widget.initialize({ model });
  window.__models.push(model);
  return window.__models.length - 1;
};
/** A view of model i in a fresh element; returns the view's index. */
window.renderView = (i) => {
  const el = document.createElement("div");
  el.className = "view";
  document.body.appendChild(el);
  const dispose = window.__widget.render({ model: window.__models[i], el });
  window.__views.push({ el, dispose });
  return window.__views.length - 1;
};
window.closeView = (v) => { window.__views[v].dispose(); window.__views[v].el.remove(); };
"""


@pytest.fixture(scope="module")
def widget_browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Headless Chromium for one test module (the session's, when one is already up: a
    second Playwright cannot start in a thread where one runs)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        yield request.getfixturevalue("chromium")
        return
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("front-end tests need playwright (pip install -e .[test])")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing(f"front-end tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


@pytest.fixture
def widget_page(widget_browser: Any) -> Iterator[Any]:
    """A blank Chromium page with nbremind's widget module loaded (``window.__widget``)."""
    context = widget_browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(content=_HARNESS)
        page.evaluate(
            """async (source) => {
                const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
                window.__widget = (await import(url)).default;
            }""",
            ESM.read_text(encoding="utf-8"),
        )
        yield page
        assert errors == [], f"errors in the page: {errors}"
    finally:
        context.close()


# -- clicking notifications: what the click tests set up in a page ---------------------------

#: A recorder for ``window.Notification`` whose instances are kept (``window.__made``) and
#: count their ``close()`` calls; ``window.__focused`` counts ``window.focus()`` calls.
RECORDER = """() => {
  window.__made = [];
  window.__focused = 0;
  window.focus = () => { window.__focused += 1; };
  window.Notification = class extends EventTarget {
    constructor(title, options) {
      super();
      this.title = title; this.options = options; this.closed = 0; this.onclick = null;
      this.addEventListener("click", (event) => { if (this.onclick) this.onclick(event); });
      window.__made.push(this);
    }
    close() { this.closed += 1; }
    static get permission() { return "granted"; }
  };
}"""

#: Emulates where the user is: ``watching`` (the tab visible and focused) or not.
WATCH = """(watching) => {
  Object.defineProperty(document, "visibilityState", {
    configurable: true, get: () => (watching ? "visible" : "hidden"),
  });
  document.hasFocus = () => watching;
}"""

#: Where element ``sel`` is against the viewport, and whether it is highlighted.
WHERE = """(sel) => {
  const el = document.querySelector(sel);
  const r = el.getBoundingClientRect();
  return { inView: r.top >= 0 && r.bottom <= window.innerHeight,
           highlighted: el.classList.contains("nbremind-highlight") };
}"""

#: A page taller than the viewport: content goes between two screens of empty space.
SPACER = """(n) => {
  const spacer = document.createElement("div");
  spacer.className = "spacer";
  spacer.style.height = `${n * window.innerHeight}px`;
  document.body.appendChild(spacer);
}"""


def clicking_page(page: Any) -> Any:
    """``page`` with the :data:`RECORDER`, two screens of space (:data:`SPACER`) and the user
    not watching it (:data:`WATCH`)."""
    page.evaluate(RECORDER)
    page.evaluate(WATCH, False)
    page.evaluate(SPACER, 2)
    return page
