"""Every code sample in README.md and docs/*.md is checked, each as its own test named after
its page and the line of its opening fence (``docs/settings.md:12``):

* ``python`` blocks run as a script in a fresh interpreter, in an empty folder, with their
  own data folder and notices sent to the ``memory`` channel, and must exit with status 0;
* ``ipython`` blocks, and ``python`` blocks with magic lines (``%load_ext``, ``%%remind``,
  ``%remind``), run as a notebook cell with nbclient after ``%load_ext nbremind``, and no
  cell may fail;
* ``bash``, ``sh`` and ``console`` blocks: each ``nbremind`` (or ``python -m nbremind``) line
  names a subcommand whose ``--help`` works and lists every option the line uses; each
  ``make`` line names targets the Makefile has;
* ``toml`` blocks parse, and load as a settings file with every value usable (as
  ``nbremind doctor --json`` reports it);
* ``json`` blocks parse.

Blocks with no language (or ``text``) show output or a synopsis and are not run.

An HTML comment on the line before a fence changes how its block is checked:
``<!-- not run: REASON -->`` (compiled only: it needs a server), ``<!-- run in a notebook -->``
and ``<!-- fails with: ValueError -->`` (the sample shows that error). Environment variables
a sample reads (``${NAME}``, ``os.environ["NAME"]``) are set to a placeholder value.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _pythons import REPO, env_for_src, run_in

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250
PYTHON = {"python", "py"}
NOTEBOOK = {"ipython"}
SHELL = {"bash", "sh", "shell", "console"}
SHOWN = {"", "text"}  # output and synopses: not run
KNOWN = PYTHON | NOTEBOOK | SHELL | SHOWN | {"toml", "json"}
#: What a sample may name after ``nbremind.``: the public API only, no module paths.
PUBLIC = {
    "remind",
    "track",
    "panel",
    "configure",
    "history",
    "current_task",
    "get_session",
    "pandas",
    "integrations",
    "testing",
    "secrets",
    "watchdog",
    "TaskTimeout",
    "TaskMemoryLimit",
    "toml",
}
#: Variables that would let a sample's process reach this machine's desktop.
DESKTOP_VARS = ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)")
_NOTE = re.compile(r"^\s*<!--\s*(?P<note>.*?)\s*-->\s*$")
_MAGIC = re.compile(r"^%{1,2}\w", re.MULTILINE)
_ENV_NAMES = re.compile(r"""\$\{(\w+)\}|os\.environ\[["'](\w+)["']\]""")
#: ``nbremind.NAME`` in a page (not a file's name in a path: ``static/nbremind.ico``).
_PUBLIC_NAME = re.compile(r"(?<![\w./\\])nbremind\.([A-Za-z_]\w*)")
#: A record of measurements, kept as measured: it names the modules it timed.
MEASUREMENTS = REPO / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Sample:
    page: str
    line: int  # of the opening fence, counted from 1
    lang: str
    code: str
    note: str  # the HTML comment on the line before the fence, if any
    end: int = 0  # the line of the closing fence

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def kind(self) -> str:
        if self.lang in NOTEBOOK or self.note == "run in a notebook":
            return "notebook"
        if self.lang in PYTHON:
            return "notebook" if _MAGIC.search(self.code) else "python"
        if self.lang in SHELL:
            return "shell"
        return "shown" if self.lang in SHOWN else self.lang

    def _noted(self, prefix: str) -> str | None:
        return self.note[len(prefix) :].strip() if self.note.startswith(prefix) else None

    @property
    def not_run(self) -> str | None:
        """Why the sample is only compiled, when it is."""
        return self._noted("not run:")

    @property
    def fails_with(self) -> str | None:
        """The exception type the sample is meant to raise, if any."""
        return self._noted("fails with:")

    def env(self) -> dict[str, str]:
        """A placeholder for each environment variable the sample reads."""
        names = {a or b for a, b in _ENV_NAMES.findall(self.code)}
        return {name: f"placeholder-{name.lower()}" for name in names if name}


def read_samples(path: Path) -> list[Sample]:
    """The fenced code blocks of one Markdown page."""
    page = path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    samples: list[Sample] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        before = lines[i - 1] if i else ""
        note = _NOTE.match(before)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(
            rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]
        ):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        assert j < len(lines), f"{page}:{i + 1}: the code block is never closed"
        samples.append(
            Sample(
                page,
                i + 1,
                opening["lang"].lower(),
                "\n".join(body) + "\n",
                note["note"] if note else "",
                j + 1,
            )
        )
        i = j + 1
    return samples


def shown_error(sample: Sample) -> str | None:
    """The error a failing sample shows: the text block right after it (one blank line
    between), if there is one."""
    after = [s for s in SAMPLES if s.page == sample.page and s.line == sample.end + 2]
    return after[0].code.strip() if after and after[0].kind == "shown" else None


SAMPLES = [sample for path in PAGES for sample in read_samples(path)]


def of_kind(kind: str) -> list[Any]:
    return [pytest.param(s, id=s.id) for s in SAMPLES if s.kind == kind]


def sample_env(sample: Sample, tmp_path: Path) -> dict[str, str]:
    """What a sample runs with: its own data folder, notices to ``memory``, no desktop."""
    env = env_for_src(
        **sample.env(), NBREMIND_DATA_DIR=str(tmp_path / "data"), NBREMIND_CHANNELS="memory"
    )
    return {k: v for k, v in env.items() if k not in DESKTOP_VARS}


# -- the pages themselves ------------------------------------------------------------------------
def test_the_pages_have_samples_of_every_checked_kind() -> None:
    kinds = {s.kind for s in SAMPLES}
    assert {"python", "notebook", "shell", "toml", "json"} <= kinds, kinds


@pytest.mark.parametrize("sample", [pytest.param(s, id=s.id) for s in SAMPLES])
def test_every_code_block_is_of_a_language_that_is_checked(sample: Sample) -> None:
    assert sample.lang in KNOWN, f"{sample.id}: no check for ```{sample.lang} blocks"
    assert not sample.note or sample.not_run or sample.fails_with or sample.kind == "notebook", (
        f"{sample.id}: unknown note <!-- {sample.note} -->"
    )


def test_exemptions_are_few_and_give_a_reason() -> None:
    exempt = [s for s in SAMPLES if s.not_run is not None]
    assert all(s.not_run for s in exempt), [s.id for s in exempt if not s.not_run]
    assert all(s.kind in ("python", "notebook") for s in exempt), [s.id for s in exempt]
    assert len(exempt) <= 3, [s.id for s in exempt]


def test_the_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, len(lines)


@pytest.mark.parametrize(
    "path", [p for p in PAGES if p != MEASUREMENTS], ids=lambda p: p.relative_to(REPO).as_posix()
)
def test_the_pages_name_only_the_public_api(path: Path) -> None:
    named = set(_PUBLIC_NAME.findall(path.read_text(encoding="utf-8")))
    assert named <= PUBLIC, sorted(named - PUBLIC)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown (MkDocs) and GitHub give a heading."""
    text = heading.replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE)}


def test_the_readme_links_reach_pages_and_headings_that_exist() -> None:
    """The docs site's strict build checks the links between docs pages; this checks the
    README's, which is not part of the site."""
    readme = REPO / "README.md"
    links = re.findall(r"\]\(([^)\s]+)\)", readme.read_text(encoding="utf-8"))
    local = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert local, "the README links no docs page"
    for link in local:
        target, _, anchor = link.partition("#")
        path = (readme.parent / target) if target else readme
        assert path.is_file(), f"README.md links {link}: no such file"
        if anchor:
            assert anchor in _anchors(path), f"README.md links {link}: no such heading"


def test_the_readme_links_every_docs_page() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    pages = [p for p in PAGES if p.parent.name == "docs" and p.name != "index.md"]
    unlinked = [p.name for p in pages if f"(docs/{p.name}" not in text]
    assert not unlinked, unlinked


# -- python: a script in a fresh interpreter ---------------------------------------------------
@pytest.mark.parametrize("sample", of_kind("python"))
def test_python_sample_runs(sample: Sample, tmp_path: Path) -> None:
    compile(sample.code, sample.id, "exec")
    if sample.not_run is not None:
        return
    script = tmp_path / "sample.py"
    script.write_text(sample.code, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    env = sample_env(sample, tmp_path)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = f"{sample.id}:\n{sample.code}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n"
    shown += done.stderr
    if sample.fails_with:
        assert done.returncode != 0, shown
        last = done.stderr.strip().splitlines()[-1]
        assert last.split(":")[0].rsplit(".", 1)[-1] == sample.fails_with, shown
        assert shown_error(sample) in (None, last), shown
    else:
        assert done.returncode == 0, shown


# -- notebooks: cells run by nbclient ----------------------------------------------------------
@pytest.mark.kernel
@pytest.mark.parametrize("sample", of_kind("notebook"))
def test_notebook_sample_runs(sample: Sample, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    if sample.not_run is not None:
        return
    cells = [sample.code.rstrip("\n")]
    if "%load_ext nbremind" not in sample.code:
        cells.insert(0, "%load_ext nbremind")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    work = tmp_path / "work"
    work.mkdir()
    replies: list[tuple[int, dict[str, Any]]] = []
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(work)}},
        on_cell_executed=lambda cell, cell_index, execute_reply: replies.append(
            (cell_index, execute_reply["content"])
        ),
    )
    client.execute(env=sample_env(sample, tmp_path))
    assert [i for i, _ in replies] == list(range(len(cells))), replies
    # a failed cell: its reply says so (a UsageError shows no traceback, only its reply does)
    errors = [(i, reply) for i, reply in replies if reply["status"] != "ok"]
    shown = "\n".join(
        f"cell {i}: {reply['status']}: {reply.get('ename')}: {reply.get('evalue')}"
        for i, reply in errors
    )
    if sample.fails_with:
        assert [(i, reply.get("ename")) for i, reply in errors] == [
            (len(cells) - 1, sample.fails_with)
        ], f"{sample.id}:\n{shown}"  # the sample's cell
        [(_, reply)] = errors
        assert shown_error(sample) in (None, f"{reply['ename']}: {reply['evalue']}"), shown
        if reply["ename"] == "UsageError":  # the cell did not run
            assert not [o for o in nb.cells[-1].outputs if o.get("name") == "stdout"], shown
    else:
        assert not errors, f"{sample.id}:\n{sample.code}\n{shown}"


# -- shell: commands that exist, with options they take -------------------------------------
def shell_lines(sample: Sample) -> list[list[str]]:
    """The sample's command lines as words (continuations joined, comments left out, leading
    ``NAME=value`` assignments dropped); in a ``console`` block, the lines after a ``$ ``
    prompt only (the others are output)."""
    joined = re.sub(r"\\\n", " ", sample.code)
    commands = []
    for line in joined.splitlines():
        if sample.lang == "console":
            if not line.lstrip().startswith("$ "):
                continue
            line = line.lstrip()[2:]
        words = shlex.split(line, comments=True)
        while words and re.match(r"^\w+=", words[0]):
            words.pop(0)
        if words:
            commands.append(words)
    return commands


def _makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", text, re.MULTILINE))


def _nbremind_args(words: list[str]) -> list[str] | None:
    """The words after ``nbremind`` (or ``python -m nbremind``), or ``None``."""
    if Path(words[0]).name == "nbremind":
        return words[1:]
    if Path(words[0]).name.startswith("python") and words[1:3] == ["-m", "nbremind"]:
        return words[3:]
    return None


#: Subcommands with subcommands of their own, whose options are theirs (``jobs run``).
_NESTED = ("setup", "jobs")


@pytest.mark.parametrize("sample", of_kind("shell"))
def test_shell_sample_names_commands_that_exist(sample: Sample, tmp_path: Path) -> None:
    targets = _makefile_targets()
    for words in shell_lines(sample):
        line = " ".join(words)
        if words[0] == "make":
            named = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
            assert named and set(named) <= targets, f"{sample.id}: {line}: {targets}"
            continue
        args = _nbremind_args(words)
        assert args, f"{sample.id}: {line}: only nbremind and make lines can be checked"
        depth = 2 if args[0] in _NESTED and args[1:2] and args[1][0] not in "-[" else 1
        command, options = args[:depth], args[depth:]  # (`setup windows`: its own options)
        subcommand = " ".join(command)
        if "--" in options:
            options = options[: options.index("--")]  # the rest is the command it runs
        help_ = run_in(tmp_path, sys.executable, "-m", "nbremind", *command, "--help")
        assert help_.returncode == 0, f"{sample.id}: {line}\n{help_.stderr}"
        named = {m for w in options for m in re.findall(r"--[a-z][\w-]*", w)}
        unknown = {o for o in named if not re.search(rf"{re.escape(o)}\b", help_.stdout)}
        assert not unknown, f"{sample.id}: {line}: nbremind {subcommand} has no {unknown}"


# -- toml: a settings file nbremind can use --------------------------------------------------
@pytest.mark.parametrize("sample", of_kind("toml"))
def test_toml_sample_is_a_usable_settings_file(sample: Sample, tmp_path: Path) -> None:
    data = tomllib.loads(sample.code)
    project = tmp_path / "project"
    project.mkdir()
    # a [tool.nbremind] table is written for pyproject.toml; the rest for nbremind.toml
    path = project / ("pyproject.toml" if "tool" in data else "nbremind.toml")
    path.write_text(sample.code, encoding="utf-8")
    env = sample_env(sample, tmp_path)
    del env["NBREMIND_CHANNELS"]  # the file's own channels, if it has any
    done = subprocess.run(
        [sys.executable, "-m", "nbremind", "doctor", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: no desktop here, say
    [settings] = [c for c in json.loads(done.stdout)["checks"] if c["name"] == "settings"]
    assert settings["ok"] is True, f"{sample.id}:\n{json.dumps(settings, indent=1)}"
    assert any(str(path) in line and "cannot" not in line for line in settings["detail"]), settings


# -- json ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", of_kind("json"))
def test_json_sample_parses(sample: Sample) -> None:
    json.loads(sample.code)
