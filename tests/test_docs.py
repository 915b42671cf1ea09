"""README.md and docs/*.md cannot drift: their ```python blocks run, their `nas` commands parse, the paths and
links they name exist, and docs/choices.md is exactly what the registries generate."""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from search.cli import build_parser
from space.choices import choices_page

from .search._tiny_run import tiny_run

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = "\n".join(p.read_text() for p in PAGES)  # every page, checked as one text


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def _subcommands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)


def _nas_lines() -> list[str]:
    """Every command line of the ```bash blocks that runs `nas` (comments and continuations joined)."""
    lines = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if re.match(r"^(\.venv/bin/)?nas\s", line):
                lines.append(line)
    return lines


PYTHON_BLOCKS = _blocks("python")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "tiny_shared"
    base.mkdir(exist_ok=True)
    return tiny_run(base)


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_blocks_run(index, tiny, tmp_path, monkeypatch):
    """Each block runs in a folder holding a finished run at results/qs (the README's example name)."""
    shutil.copytree(tiny, tmp_path / "results" / "qs", ignore=shutil.ignore_patterns("ray"))
    monkeypatch.chdir(tmp_path)
    exec(compile(PYTHON_BLOCKS[index], f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})


def test_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 2


def test_every_nas_subcommand_mentioned_exists():
    known = _subcommands()
    mentioned = set(re.findall(r"`(?:\.venv/bin/)?nas ([a-z][a-z-]*)", README))
    mentioned |= {shlex.split(line)[1] for line in _nas_lines()}
    assert mentioned, "README mentions no nas command"
    unknown = sorted(mentioned - known)
    assert not unknown, f"README mentions unknown subcommands {unknown}; known: {sorted(known)}"


def test_every_nas_command_line_parses():
    """The ```bash examples use only options the parser knows (argparse exits 2 otherwise); a line with an
    ellipsis (``...``) is an abbreviation and only has its subcommand checked."""
    parser = build_parser()
    lines = [line for line in _nas_lines() if "..." not in line]
    assert len(lines) >= 5
    for line in lines:
        try:
            parser.parse_args(shlex.split(line)[1:])
        except SystemExit as exc:
            pytest.fail(f"README command does not parse (exit {exc.code}): {line}")


def test_paths_mentioned_exist():
    roots = "configs|bench|tests|search|space|train|evaluators|docs"
    paths = set(re.findall(rf"\b((?:{roots})/[\w./-]+\.(?:yaml|py|json|md))", README))
    assert any(p.startswith("configs/") for p in paths)
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README names files that do not exist: {missing}"
    for target in re.findall(r"\bmake ([a-z][a-z-]*)", README):
        assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), flags=re.M), f"make {target}"


def test_choices_page_is_generated_from_the_registries():
    page = (ROOT / "docs" / "choices.md").read_text()
    assert page == choices_page(), "docs/choices.md is stale (a choice was added, removed or re-documented); " \
                                   "regenerate it with `.venv/bin/python -m space.choices --write docs/choices.md`"


def test_links_between_pages_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(((?:docs/)?[\w.-]+\.md)(?:#[\w-]+)?\)", page.read_text()):
            base = ROOT if page.name == "README.md" else page.parent
            assert (base / target).exists() or (ROOT / target).exists(), f"{page.name} links to missing {target}"


def test_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
