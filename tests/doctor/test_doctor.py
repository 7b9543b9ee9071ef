"""``nbremind doctor`` and ``nbremind test`` as real subprocesses, on this machine: with the
real dunst fixture, with no session bus, with a bus nobody serves notifications on, with a
project settings file holding a bad value, and with a notice an ended process left in the
real outbox file."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from _cgroup import limited_cgroup
from _desktop_bus import DesktopBus
from _desktop_fakes import RecordingBackend, fake_macos
from _kernel import Kernel
from nbremind.core.clock import SystemClock
from nbremind.core.notice import format_size, make_notice
from nbremind.core.task import Task, TaskState
from nbremind.doctor import Check, Report
from nbremind.doctor.desktop import desktop_facts
from nbremind.runtime.memory_limit import find_scope
from nbremind.store.outbox import FILE_NAME, Outbox, Owner

PY = sys.executable
BUS = "DBUS_SESSION_BUS_ADDRESS"
CHECKS = {
    "desktop",
    "browser",
    "default channels",
    "settings",
    "outbox",
    "history",
    "gpu",
    "memory limit",
}


def _env(**extra: str) -> dict[str, str]:
    """This test's environment (its own data and settings folders) with no session bus."""
    env = {k: v for k, v in os.environ.items() if k not in (BUS, "WAYLAND_DISPLAY")}
    env.update(extra)
    return env


def _nbremind(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "nbremind", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=90,
    )


def _doctor_json(env: dict[str, str], cwd: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    run = _nbremind(env, cwd, "doctor", "--json")
    data = json.loads(run.stdout)
    checks = {check["name"]: check for check in data["checks"]}
    assert set(checks) == CHECKS, run.stdout
    assert data["ok"] is (run.returncode == 0), run.stdout
    return run.returncode, checks


# -- with the real dunst -------------------------------------------------------------------------
@pytest.mark.desktop
def test_with_dunst_doctor_names_the_service_and_test_delivers(
    desktop_bus: DesktopBus, tmp_path: Path
) -> None:
    env = _env(**desktop_bus.extra_env)
    run = _nbremind(env, tmp_path, "doctor")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    desktop = next(line for line in lines if line.startswith("✓ desktop: "))
    assert "DBusDesktopNotifier" in desktop and "dunst" in desktop, desktop
    assert f"    {BUS}: {desktop_bus.address}" in lines
    assert "    bus reachable: yes" in lines
    assert any(line.startswith("    notification service: dunst ") for line in lines), lines
    assert any(line.startswith("✓ default channels: desktop — a local desktop") for line in lines)
    assert lines[-1] == "Everything notices need works here."

    code, checks = _doctor_json(env, tmp_path)
    assert code == 0 and checks["desktop"]["ok"] is True and checks["desktop"]["required"]
    assert (
        checks["browser"]["ok"] is None
        and "only inside a notebook kernel" in (checks["browser"]["summary"])
    )

    sent = _nbremind(env, tmp_path, "test", "desktop")
    assert (sent.returncode, sent.stdout) == (0, "desktop  delivered\n"), sent.stderr
    shown = desktop_bus.wait_in_history("nbremind test notice")
    assert "the channel works" in shown["body"]
    [notify] = [
        n
        for n in desktop_bus.notifications()
        if n["summary"] == "nbremind test notice" and n["app_name"] == "nbremind"
    ][-1:]
    assert notify["urgency"] == 1

    before = len(desktop_bus.notifications())
    default = _nbremind(env, tmp_path, "test")  # no channel named: the default, desktop
    assert (default.returncode, default.stdout) == (0, "desktop  delivered\n"), default.stderr
    assert len(desktop_bus.notifications()) == before + 1


# -- without a session bus -----------------------------------------------------------------------
def test_without_a_bus_desktop_fails_with_the_reason_and_exit_status_1(tmp_path: Path) -> None:
    env = _env()
    run = _nbremind(env, tmp_path, "doctor")
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    reason = "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"
    assert f"✗ desktop: toasts cannot be shown: {reason}" in lines
    assert any(line.startswith(f"    {BUS}: not set") for line in lines), lines
    assert any(
        line.startswith("✗ default channels: desktop — desktop unavailable: " + reason)
        for line in lines
    ), lines
    assert lines[-1].startswith("Not everything notices need works here: see desktop")

    code, checks = _doctor_json(env, tmp_path)
    assert code == 1 and checks["desktop"]["ok"] is False
    assert checks["settings"]["ok"] is True and checks["outbox"]["ok"] is True

    sent = _nbremind(env, tmp_path, "test", "desktop")
    assert sent.returncode == 1
    assert sent.stdout == f"desktop  unavailable: {reason}\n"
    default = _nbremind(env, tmp_path, "test")
    assert (default.returncode, default.stdout) == (1, f"desktop  unavailable: {reason}\n")


def test_channels_named_in_the_settings_decide_the_exit_status(tmp_path: Path) -> None:
    (tmp_path / "nbremind.toml").write_text('channels = ["memory"]\n')
    code, checks = _doctor_json(_env(), tmp_path)
    assert code == 0  # the desktop is not needed: notices go to memory
    assert checks["desktop"]["ok"] is False and checks["desktop"]["required"] is False
    assert checks["default channels"]["ok"] is True
    assert checks["default channels"]["summary"] == (
        f"memory (from {tmp_path.resolve() / 'nbremind.toml'})"
    )


# -- a bus with no notification service ---------------------------------------------------------
@pytest.mark.desktop
def test_on_a_bare_bus_nobody_provides_notifications(bare_bus: str, tmp_path: Path) -> None:
    env = _env(**{BUS: bare_bus})
    code, checks = _doctor_json(env, tmp_path)
    assert code == 1
    desktop = checks["desktop"]
    assert desktop["ok"] is False
    assert desktop["summary"] == (
        "toasts cannot be shown: no notification service on the "
        "session bus (nobody owns org.freedesktop.Notifications)"
    )
    assert f"{BUS}: {bare_bus}" in desktop["detail"]
    assert "bus reachable: yes" in desktop["detail"]
    assert any(
        line.startswith("org.freedesktop.Notifications: nobody provides it")
        for line in desktop["detail"]
    ), desktop["detail"]

    sent = _nbremind(env, tmp_path, "test", "desktop")
    assert sent.returncode == 1
    assert sent.stdout == (
        "desktop  unavailable: no notification service on the session bus "
        "(nobody owns org.freedesktop.Notifications)\n"
    )


# -- a settings file with a bad value ------------------------------------------------------------
def test_a_bad_value_in_the_project_file_is_named_with_its_file_key_and_value(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    settings = project / "nbremind.toml"
    settings.write_text('quiet_hours = "25:00-07:00"\nmin_duration = "30s"\n')
    code, checks = _doctor_json(_env(), project / "notebooks")
    assert code == 1
    check = checks["settings"]
    assert check["ok"] is False and check["required"] is True
    summary = check["summary"]
    assert str(settings.resolve()) in summary and "quiet_hours" in summary
    assert "'25:00-07:00'" in summary, summary
    assert (
        f"project settings file: {settings.resolve()} (cannot be used: see below) "
        f"(looked up from {(project / 'notebooks').resolve()})"
    ) in check["detail"]

    text = _nbremind(_env(), project / "notebooks", "doctor").stdout
    assert "✗ settings: cannot be used, left out (the rest applies): " in text
    assert "quiet_hours: '25:00-07:00' is not a range" in text


# -- a notice left in the outbox by a process that ended -----------------------------------------
def test_the_backlog_left_by_an_ended_process_is_counted_and_left_alone(
    nbremind_data_dir: Path, tmp_path: Path
) -> None:
    task = Task("nightly-etl", clock=SystemClock())
    task.mark_started()
    task.mark_ended(TaskState.SUCCEEDED)
    notice = make_notice("success", task.snapshot(), created=time.time(), key="end")
    # this process's pid with another start time: a process that ended (its pid reused)
    dead = Outbox(
        nbremind_data_dir / FILE_NAME, owner=Owner(os.getpid(), 1.0, socket.gethostname())
    )
    assert dead.record(notice, ["memory"])
    dead.close()

    _code, checks = _doctor_json(_env(), tmp_path)
    outbox = checks["outbox"]
    assert outbox["ok"] is True
    assert outbox["summary"].startswith("backlog: 1 delivery pending"), outbox["summary"]
    assert outbox["detail"][0].startswith(
        f"file: {nbremind_data_dir / FILE_NAME} (folder from NBREMIND_DATA_DIR)"
    )
    assert any(line.startswith(f"{notice.title} → memory (") for line in outbox["detail"])

    reader = Outbox(nbremind_data_dir / FILE_NAME)
    try:  # the doctor only looked: the notice still waits for the next process
        assert [(r.notice_id, r.state) for r in reader.pending()] == [(notice.id, "pending")]
    finally:
        reader.close()


# -- Windows and macOS, through desktop-notifier's own backend choice -----------------------------
def _windows(monkeypatch: pytest.MonkeyPatch, version: str, registered: bool) -> None:
    monkeypatch.setattr("platform.system", lambda: "Windows")
    monkeypatch.setattr("platform.version", lambda: version)
    winrt = types.ModuleType("desktop_notifier.backends.winrt")
    winrt.WinRTDesktopNotifier = RecordingBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "desktop_notifier.backends.winrt", winrt)
    monkeypatch.setattr("nbremind.doctor.desktop.aumid_registered", lambda: registered)


def test_windows_names_the_backend_and_the_app_id_registration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _windows(monkeypatch, "10.0.22631", registered=False)
    facts = asyncio.run(desktop_facts())
    assert facts.available.ok and facts.backend == "RecordingBackend"
    key = r"HKEY_CURRENT_USER\Software\Classes\AppUserModelId\nbremind"
    assert facts.lines == (
        "backend: RecordingBackend — Windows 10 or later: WinRT toasts, shown under the app id "
        "'nbremind'",
        f"app id 'nbremind': not registered yet ({key} is missing); it is registered with the "
        "first toast, e.g. by `nbremind test desktop`",
    )
    monkeypatch.setattr("nbremind.doctor.desktop.aumid_registered", lambda: True)
    assert asyncio.run(desktop_facts()).lines[1] == f"app id 'nbremind': registered ({key})"


def test_windows_before_10_has_no_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    _windows(monkeypatch, "6.1.7601", registered=False)
    facts = asyncio.run(desktop_facts())
    assert not facts.available.ok and facts.backend == "DummyNotificationCenter"
    assert facts.available.reason == "no desktop notification backend for Windows"
    assert "Windows 6.1.7601 is older than Windows 10 (10.0.10240)" in facts.lines[0]


def test_macos_says_whether_python_runs_from_an_app_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_macos(monkeypatch, bundle=False)
    monkeypatch.setattr(sys, "executable", "/opt/homebrew/bin/python3.12")
    facts = asyncio.run(desktop_facts())
    assert not facts.available.ok and facts.backend == "DummyNotificationCenter"
    assert facts.available.reason.startswith("macOS: notifications need an app bundle")
    assert "only to apps run from a signed app bundle" in facts.lines[0]
    assert facts.lines[1].startswith("app bundle: no, Python runs from /opt/homebrew/bin/")

    fake_macos(monkeypatch, bundle=True)
    app = "/Applications/JupyterLab.app"
    monkeypatch.setattr(sys, "executable", f"{app}/Contents/Resources/env/bin/python")
    facts = asyncio.run(desktop_facts())
    assert facts.available.ok and facts.backend == "RecordingBackend"
    assert facts.lines[1] == f"app bundle: yes, Python runs from {app}"


# -- %remind doctor, inside a real kernel -------------------------------------------------------
@pytest.mark.kernel
def test_remind_doctor_in_a_kernel_uses_its_settings_and_asks_for_the_browser(
    remind_kernel: Kernel,
) -> None:
    lines = remind_kernel.ok("%remind doctor").stdout.splitlines()
    # the kernel's configure(channels=["memory"]) decides, with its source
    assert "✓ default channels: memory (from configure())" in lines, lines
    browser = next(line for line in lines if line.startswith(("✓ browser", "✗ browser")))
    assert browser.startswith("✗ browser: unavailable: no browser front end connected"), lines
    assert lines[-1] == "Everything notices need works here."
    bad = remind_kernel.run("%remind doctor now")
    assert (bad.status, bad.ename) == ("error", "UsageError")
    assert "takes no arguments" in bad.evalue


# -- the record and the command's help -----------------------------------------------------------
def test_only_required_checks_decide_and_the_report_reads_well() -> None:
    report = Report(
        (
            Check("desktop", False, "toasts cannot be shown: why", ("backend: X",)),
            Check("browser", None, "only inside a notebook kernel"),
            Check("settings", True, "1 file read", required=True),
        )
    )
    assert report.ok
    assert report.lines() == [
        "✗ desktop: toasts cannot be shown: why",
        "    backend: X",
        "– browser: only inside a notebook kernel",
        "✓ settings: 1 file read",
        "Everything notices need works here.",
    ]
    broken = Report((*report.checks, Check("default channels", False, "desktop", required=True)))
    assert not broken.ok and broken.check("default channels").mark == "✗"
    assert json.loads(json.dumps(broken.to_dict()))["ok"] is False


def test_help_describes_doctor_and_its_exit_status(tmp_path: Path) -> None:
    run = _nbremind(_env(), tmp_path, "doctor", "--help")
    assert run.returncode == 0
    assert "--json" in run.stdout and "Exits 0 when" in run.stdout


# -- the memory limit ----------------------------------------------------------------------------
def test_doctor_says_which_memory_limit_applies_and_where_it_came_from(tmp_path: Path) -> None:
    text = _nbremind(_env(), tmp_path, "doctor")
    report = json.loads(_nbremind(_env(), tmp_path, "doctor", "--json").stdout)
    checks, data = {c["name"]: c for c in report["checks"]}, report["memory_limit"]
    here = find_scope()  # this process is where the command's was (the same cgroup)

    summary = f"{here.describe()} — mem_limit percents are of it"
    assert f"– memory limit: {summary}" in text.stdout.splitlines(), text.stdout
    assert (checks["memory limit"]["ok"], checks["memory limit"]["required"]) == (None, False)
    assert checks["memory limit"]["summary"] == summary
    assert data == here.to_dict()
    assert set(data) == {"bytes", "kind", "where", "cgroup", "summary", "notes"}
    if data["kind"] == "RAM":
        import psutil

        assert (data["bytes"], data["where"]) == (psutil.virtual_memory().total, "RAM")
        assert checks["memory limit"]["detail"][0].startswith(
            "mem_limit is judged by the process's RSS"
        )


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_doctor_in_a_memory_limited_cgroup_names_its_limit_file(
    version: str, tmp_path: Path
) -> None:
    limit = 700_000_000
    with limited_cgroup(version, limit) as cgroup:
        argv = [PY, "-m", "nbremind", "doctor", "--json"]
        run = subprocess.run(
            cgroup.run_in(argv),
            env=_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )
    data = json.loads(run.stdout)
    check = {c["name"]: c for c in data["checks"]}["memory limit"]

    got = data["memory_limit"]
    where = str(cgroup.folder / cgroup.limit_file)
    assert (got["kind"], got["where"], got["cgroup"]) == (f"cgroup {version}", where, cgroup.path)
    assert limit - 4096 < got["bytes"] <= limit  # (v1 rounds it down to whole pages)
    described = (
        f"{format_size(got['bytes'])} (cgroup {version} {cgroup.limit_file} of {cgroup.path})"
    )
    assert got["summary"] == described
    assert check["summary"] == f"{described} — mem_limit percents are of it"
    assert check["detail"][:2] == [
        f"file: {where}",
        "mem_limit is judged by the cgroup's working set "
        "(its usage less the file cache it can drop)",
    ]
