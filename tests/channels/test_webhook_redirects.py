"""A webhook that answers with a redirect: nothing is followed, nothing leaks, nothing counts
as delivered.

Two real servers on 127.0.0.1: the webhook answers 3xx pointing at the second, which records
anything that reaches it. The user's script runs in a fresh process, as a user runs it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from _pythons import run_in
from _servers import Reply, ScriptedHTTPServer
from nbremind.store.outbox import FILE_NAME, Outbox

SIGNING = "s1gning-secret-0042"
TOKEN = "b3arer-token-0042"
PASSWORD = "pa55word-0042"


@pytest.fixture
def elsewhere() -> Iterator[ScriptedHTTPServer]:
    server = ScriptedHTTPServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_is_a_final_failure_naming_the_location(
    status: int,
    http_server: ScriptedHTTPServer,
    elsewhere: ScriptedHTTPServer,
    nbremind_data_dir: Path,
    tmp_path: Path,
) -> None:
    target = elsewhere.url("/collect")
    http_server.default = Reply(status, headers={"Location": target}, body=b"")
    hook = http_server.url("/hook").replace("http://", f"http://user:{PASSWORD}@")
    script = (
        "import nbremind\n"
        "nbremind.configure(channel_defs={'team': {"
        f"'url': {hook!r}, 'secret': {SIGNING!r}, "
        f"'headers': {{'X-Token': {TOKEN!r}}}}}}})\n"
        "with nbremind.remind('job', channels=['team']):\n    pass\n"
    )
    done = run_in(tmp_path, sys.executable, "-c", script)
    assert done.returncode == 0, done.stderr

    [request] = http_server.wait_for(1)  # one try: a redirect is not retried
    assert request.method == "POST" and "X-Nbremind-Signature" in request.headers
    assert elsewhere.requests == []  # nothing, credentials or not, went to the other server

    box = Outbox(nbremind_data_dir / FILE_NAME)
    try:
        [row] = box.records()
    finally:
        box.close()
    assert row.channel == "team" and row.state == "failed" and row.attempts == 1
    assert f"HTTP {status}" in row.last_error and target in row.last_error
    for secret in (SIGNING, TOKEN, PASSWORD):
        assert secret not in row.last_error and secret not in done.stderr
