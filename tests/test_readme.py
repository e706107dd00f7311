"""The README as a contract: every command it shows must work as written in the project's environment.

Each command line (fenced bash blocks and inline `code` that starts with `make`, `.venv/bin/` or an environment
assignment) is checked without the long work it starts: `make` targets exist; notebooks and every parameter
given with -p / -y are declared by the notebook, with valid profile, city scale and dataset names; the CLI and the
scripts accept every flag used; and the short commands (`--help-notebook`) run. Running each notebook and command at
smoke size is what the rest of the suite does.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import papermill
import pytest

from addressclip import profiles
from addressclip.datasets import DATASETS
from addressclip.datasets.registry import CITY_SCALES
from addressclip.paths import REPO_ROOT

VENV_BIN = Path(sys.executable).parent


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`((?:make |\.venv/bin/)[^`]+)`", text)
    commands = []
    for line in lines:
        line = line.split(" #")[0].strip()
        if line and (line.startswith(("make ", ".venv/bin/")) or re.match(r"^[A-Z_]+=\S+ ", line)):
            commands.append(line)
    return list(dict.fromkeys(commands))


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands_we_check():
    assert any(c.startswith("make demo") for c in COMMANDS) and any(c.startswith("make test") for c in COMMANDS)
    assert sum(c.startswith(".venv/bin/papermill") for c in COMMANDS) >= 5
    assert any(c.startswith(".venv/bin/addressclip predict") for c in COMMANDS)


@lru_cache(maxsize=None)
def help_text(*argv: str) -> str:
    done = subprocess.run([*argv, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def flags(argv: list[str]) -> list[str]:
    return [a.split("=")[0] for a in argv if a.startswith("-") and a not in ("-", "--")]


def check_flags(argv: list[str], usage: str) -> None:
    for flag in flags(argv):
        assert re.search(rf"(^|[\s\[,]){re.escape(flag)}\b", usage), f"{flag} is not an option of: {usage[:300]}"


def check_papermill(argv: list[str]) -> None:
    if "--help-notebook" in argv:
        notebook = argv[argv.index("--help-notebook") + 1]
        done = subprocess.run([str(VENV_BIN / "papermill"), "--help-notebook", notebook], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Parameters inferred" in done.stdout, done.stderr[-1000:]
        return
    notebook = REPO_ROOT / argv[1]
    assert notebook.exists(), notebook
    declared = papermill.inspect_notebook(str(notebook))
    given: dict[str, str] = {}
    for i, a in enumerate(argv):
        if a == "-p":
            given[argv[i + 1]] = argv[i + 2]
        elif a == "-y":
            key, value = argv[i + 1].split(":", 1)
            given[key.strip()] = value.strip()
    unknown = set(given) - set(declared)
    assert not unknown, f"{notebook.name} declares no parameters {sorted(unknown)}"
    if "profile" in given:
        assert given["profile"] in profiles.PROFILES
    if "city_scale" in given:
        assert given["city_scale"] in CITY_SCALES
    for key in ("dataset", "second_city"):
        if key in given:
            assert given[key] in DATASETS or "/" in given[key], f"{key} {given[key]!r} is not a registered dataset"


def check_make(argv: list[str]) -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (REPO_ROOT / "Makefile").read_text(), flags=re.M))
    assert argv[1] in targets, f"make {argv[1]}: no such target"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_works_as_written(command):
    argv = shlex.split(command)
    while re.match(r"^[A-Z_]+=", argv[0]):  # environment assignments
        argv = argv[1:]
    program = argv[0]
    if program == "make":
        return check_make(argv)
    assert program.startswith(".venv/bin/"), f"run it from the environment: {command}"
    tool = VENV_BIN / program.removeprefix(".venv/bin/")
    assert tool.exists(), f"{tool} is not installed in the environment"
    name = tool.name
    if name == "papermill":
        return check_papermill(argv)
    if name == "torchrun":
        assert argv[argv.index("-m") + 1] == "addressclip.cli"
        argv = ["addressclip", *argv[argv.index("-m") + 2:]]
        name = "addressclip"
    if name == "addressclip":
        return check_flags(argv[2:], help_text(str(VENV_BIN / "addressclip"), argv[1]))
    if name == "python":
        if argv[1] == "-m":
            return
        script = REPO_ROOT / argv[1]
        assert script.exists(), script
        return check_flags(argv[2:], help_text(str(tool), str(script)))
    if name == "tensorboard":
        return check_flags(argv[1:], help_text(str(tool)))
    raise AssertionError(f"no check for {program}; add one")
