"""The documentation tells the truth about the code: licence, commands, region examples, nav.

The site itself is built by CI (``.ci/run``: ``mkdocs build --strict``, API pages
included); these checks are cheap and need no MkDocs:

* ``LICENSE`` is the Apache License 2.0, word for word, and ``pyproject.toml`` says so;
* every ``nowcast COMMAND [SUBCOMMAND] --option`` in a fenced code block of the README,
  ``docs/*.md`` and ``docs/guide/*.md`` names a command, sub-command and options that
  exist (the typer app, converted to click); every ``python -m MODULE`` names a module;
* every region YAML shown in ``docs/guide/*.md`` loads as a :class:`nowcast.config.Region`;
* every page in the ``mkdocs.yml`` nav exists, and every user-guide page is in it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: sha256 of the canonical Apache License 2.0 text (apache.org LICENSE-2.0.txt), whose
#: appendix holds the placeholder line below where a project puts its copyright.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
APACHE_PLACEHOLDER = "   Copyright [yyyy] [name of copyright owner]"

#: Fenced blocks whose lines are shell commands; ``ini`` (systemd units) is read for ExecStart= only.
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "cron", "crontab"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
_SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1", ">&2", "1>&2"}
#: Words after which the next word is a command.
_COMMAND_PREFIXES = {"|", "||", "&&", ";", "&", "(", "xargs", "exec", "sudo", "time", "nice", "nohup", "env", "-m"}


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((DOCS / "guide").glob("*.md"))]
    return [f for f in files if f.is_file()]


def fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    """``(language, text, first line number)`` of every fenced code block of a Markdown file."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        language = (m["info"].strip().split() or [""])[0].lstrip(".{").lower()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append((language, "\n".join(body), i + 2))
        i = j + 1
    return blocks


def _strip_substitutions(line: str) -> str:
    """Replace ``$(...)`` (nested parentheses included) and quoted strings by a placeholder word."""
    out, i = [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            out.append("ARG")
            i = j
        else:
            out.append(line[i])
            i += 1
    text = "".join(out)
    return re.sub(r"\"[^\"]*\"|'[^']*'", "ARG", text)


def command_lines(language: str, text: str) -> list[str]:
    """The logical command lines of a block (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n[ \t]*", " ", text)
    lines = []
    for line in text.splitlines():
        if language == "ini":
            if not line.startswith("ExecStart="):
                continue
            line = line[len("ExecStart="):]
        elif language not in SHELL_LANGUAGES:
            return []
        line = _strip_substitutions(line.strip())
        line = re.sub(r"(^|\s)#.*$", "", line)  # a comment (after the quotes are gone)
        if line:
            lines.append(line.removeprefix("$ "))
    return lines


def invocations(line: str) -> list[list[str]]:
    """The argument lists following ``nowcast`` (or ``.../bin/nowcast``, ``python -m nowcast``)."""
    words = line.split()
    found = []
    for k, word in enumerate(words):
        if word != "nowcast" and not (word.endswith("/nowcast") and "=" not in word):
            continue
        before = words[k - 1] if k else ""
        # Only in command position: first word, after a pipe, `xargs`, `python -m`, or an
        # environment assignment (NOWCAST_HOME=... nowcast ...); not an argument (`--home /srv/nowcast`).
        if k and before not in _COMMAND_PREFIXES and "=" not in before:
            continue
        args = []
        for w in words[k + 1:]:
            if w in _SHELL_OPERATORS or w.startswith((">", "2>", "|", ";")):
                break
            args.append(w)
        found.append(args)
    return found


def python_modules(line: str) -> list[str]:
    return re.findall(r"(?:^|\s)(?:\S*/)?python3?\s+-m\s+([A-Za-z_][\w.]*)", line)


@pytest.fixture(scope="module")
def cli():
    """The nowcast command line as a click group (typer's conversion, every command registered)."""
    import typer

    from nowcast import cli

    for module in cli.COMMAND_MODULES:
        importlib.import_module(module)
    return typer.main.get_command(cli.app)


def _option_names(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(getattr(param, "opts", []) or [])
        names.update(getattr(param, "secondary_opts", []) or [])
    return names


def check_invocation(group, args: list[str]) -> str | None:
    """``None`` when ``nowcast ARGS`` names an existing command and options, else the problem."""
    if not args:
        return None  # bare `nowcast`: prints the help
    command, rest, path = group, list(args), "nowcast"
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name not in command.commands:
            return f"'{path} {name}': no such command (known: {', '.join(sorted(command.commands))})"
        command, path = command.commands[name], f"{path} {name}"
    if hasattr(command, "commands") and command is not group and not rest:
        return None  # `nowcast archive`: the group's help
    options = _option_names(command)
    for word in rest:
        if word.startswith("-") and len(word) > 1 and not re.match(r"^-\d", word):
            name = word.split("=", 1)[0]
            if name not in options:
                return f"'{path}': no option {name} (has: {', '.join(sorted(options))})"
    return None


# ------------------------------------------------------------------ licence
def test_license_is_apache_2_verbatim_and_pyproject_agrees():
    license_file = ROOT / "LICENSE"
    assert license_file.is_file(), "LICENSE is missing"
    text = license_file.read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    copyright_lines = re.findall(r"^   Copyright \d{4} .+$", text, flags=re.MULTILINE)
    assert len(copyright_lines) == 1, "the appendix should carry exactly one project copyright line"
    canonical = text.replace(copyright_lines[0], APACHE_PLACEHOLDER)
    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == APACHE_2_SHA256, (
        "LICENSE differs from the Apache License 2.0 text (other than the copyright line)"
    )

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        match = re.search(r"^license\s*=\s*(.+)$", pyproject, flags=re.MULTILINE)
        assert match and "Apache-2.0" in match.group(1)
        return
    license_field = tomllib.loads(pyproject)["project"]["license"]
    spdx = license_field.get("text") if isinstance(license_field, dict) else license_field
    assert spdx == "Apache-2.0"


# ------------------------------------------------------------------ commands
def test_documented_commands_and_options_exist(cli):
    problems, checked, modules = [], 0, 0
    for path in doc_files():
        for language, text, lineno in fenced_blocks(path):
            for line in command_lines(language, text):
                for args in invocations(line):
                    checked += 1
                    problem = check_invocation(cli, args)
                    if problem:
                        problems.append(f"{path.relative_to(ROOT)}:{lineno}: {problem}\n    {line}")
                for module in python_modules(line):
                    modules += 1
                    if importlib.util.find_spec(module) is None:
                        problems.append(f"{path.relative_to(ROOT)}:{lineno}: python -m {module}: no such module")
    assert not problems, "documented commands that do not exist:\n" + "\n".join(problems)
    assert checked >= 30, f"only {checked} nowcast commands found in the docs: is the parser broken?"
    assert modules >= 3


def test_checker_catches_wrong_commands(cli):
    """The check above is not vacuous: it refuses what does not exist."""
    assert check_invocation(cli, ["forecast", "--region", "x", "--time", "T"]) is None
    assert check_invocation(cli, ["archive", "info", "--region", "x", "--json"]) is None
    assert check_invocation(cli, ["train", "--config", "c", "--no-resume", "-n", "2"]) is None
    assert check_invocation(cli, ["--version"]) is None
    assert "no such command" in check_invocation(cli, ["forcast", "--region", "x"])
    assert "no such command" in check_invocation(cli, ["archive", "list"])
    assert "no option --regoin" in check_invocation(cli, ["forecast", "--regoin", "x"])
    lines = command_lines("bash", 'nowcast ingest --region r "$(python -c \'print("a (b)")\')" -q  # a comment --bad')
    assert [check_invocation(cli, a) for line in lines for a in invocations(line)] == [None]
    cron = "1-59/5 * * * * NOWCAST_HOME=/srv/nowcast /opt/x/bin/nowcast run-once --region r --home /srv/nowcast -q"
    assert [invocations(line) for line in command_lines("cron", cron)] == [
        [["run-once", "--region", "r", "--home", "/srv/nowcast", "-q"]]]
    assert [invocations(line) for line in command_lines("bash", "ls x | xargs nowcast ingest -r r > log")] == [
        [["ingest", "-r", "r"]]]
    unit = "Description=nowcast for %i\nExecStart=/opt/x/.venv/bin/nowcast run-once --region %i --nope"
    assert [check_invocation(cli, a) for line in command_lines("ini", unit) for a in invocations(line)] == [
        "'nowcast run-once': no option --nope (has: " + ", ".join(sorted(_option_names(cli.commands["run-once"]))) + ")"
    ]


# ------------------------------------------------------------------ region examples
def test_region_examples_in_the_guide_load(tmp_path):
    from nowcast.config import Region

    loaded = 0
    for path in sorted((DOCS / "guide").glob("*.md")):
        for language, text, lineno in fenced_blocks(path):
            if language not in {"yaml", "yml"}:
                continue
            data = yaml.safe_load(text)
            if not (isinstance(data, dict) and {"name", "crs", "extent"} <= set(data)):
                continue  # a fragment (forecast: ...), not a whole region
            try:
                Region.model_validate(data)
            except Exception as exc:  # noqa: BLE001 - report which example and why
                pytest.fail(f"{path.relative_to(ROOT)}:{lineno}: region example does not load: {exc}")
            loaded += 1
    assert loaded >= 2


# ------------------------------------------------------------------ site navigation
def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def test_mkdocs_nav_pages_exist_and_cover_the_guide():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config.get("strict") is True, "mkdocs.yml must keep strict: true (warnings are errors)"
    pages = _nav_files(config["nav"])
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml nav names missing pages: {missing}"
    for required in ("index.md", "install.md", "first-forecast.md", "design.md", "operations.md", "data.md",
                     "benchmarks.md"):
        assert required in pages
    guide = {f"guide/{p.name}" for p in (DOCS / "guide").glob("*.md")}
    assert guide and guide <= set(pages), f"user-guide pages missing from the nav: {sorted(guide - set(pages))}"
    assert any(p.startswith("api/") for p in pages)
    for api_page in (DOCS / "api").glob("*.md"):
        for module in re.findall(r"^::: ([\w.]+)\s*$", api_page.read_text(encoding="utf-8"), flags=re.MULTILINE):
            assert importlib.util.find_spec(module) is not None, f"{api_page.name}: no module {module}"
