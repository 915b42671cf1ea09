"""The documentation page of search-space choices (docs/choices.md), generated from the registries.

    .venv/bin/python -m space.choices --write docs/choices.md     # rewrite the page after adding a choice

One row per registered block, norm, attention and activation: its config key (``space.block`` ...),
its name, the paper it implements (found in its one-line doc), what it does (the doc) and its options
with defaults (for ``space.block_args`` / ``norm_args`` / ``attn_args``). tests/test_docs.py checks
that docs/choices.md is exactly what this module generates, and says to run the command above when not.
"""
from __future__ import annotations

import re

from .registry import ACTIVATIONS, ATTENTIONS, BLOCKS, NORMS, Entry

FAMILIES = (("space.block", BLOCKS, "block_args"), ("space.norm", NORMS, "norm_args"),
            ("space.attention", ATTENTIONS, "attn_args"), ("space.act", ACTIVATIONS, ""))
_PAPER = re.compile(r"([A-Z][A-Za-z\-]+(?: (?:et al\.|& [A-Z][A-Za-z\-]+))?(?: [A-Z]{2,6})? \d{4})")
PAPERS = {  # for registered choices whose one-line doc cites no paper
    "space.block:basic": "He et al. 2016; Zagoruyko & Komodakis 2016",
    "space.block:bottleneck": "He et al. 2016; Xie et al. 2017; Radosavovic et al. 2020",
    "space.block:conv": "Han et al. 2020; Howard et al. 2019",
    "space.act:relu": "Nair & Hinton 2010", "space.act:relu6": "Howard et al. 2017",
    "space.act:leaky_relu": "Maas et al. 2013", "space.act:prelu": "He et al. 2015",
    "space.act:celu": "Barron 2017", "space.act:selu": "Klambauer et al. 2017",
    "space.act:gelu": "Hendrycks & Gimpel 2016", "space.act:silu": "Elfwing et al. 2018",
    "space.act:swish": "Ramachandran et al. 2017", "space.act:mish": "Misra 2019",
    "space.act:hard_swish": "Howard et al. 2019", "space.act:hard_sigmoid": "Howard et al. 2019",
    "space.act:hard_mish": "Misra 2019 (hard variant)",
}
HEADER = ("| config key | choice | paper | what it does | options (defaults) |\n"
          "| --- | --- | --- | --- | --- |")


def paper(doc: str) -> str:
    """The first ``Author et al. YEAR`` / ``A & B YEAR`` citation in a doc line, or an em dash."""
    found = _PAPER.findall(doc)
    return "; ".join(dict.fromkeys(found)) if found else "—"


def _options(entry: Entry, args_key: str) -> str:
    if not entry.options:
        return ""
    opts = ", ".join(f"`{k}`={v.default!r}" for k, v in entry.options.items())
    return f"{opts} (`space.{args_key}.{entry.name}`)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def choice_rows() -> list[tuple[str, str]]:
    """``(config key, choice name)`` of every registered choice, in table order."""
    return [(key, e.name) for key, registry, _ in FAMILIES for e in registry]


def choices_markdown() -> str:
    """The Markdown table (header + one row per registered choice)."""
    lines = [HEADER]
    for key, registry, args_key in FAMILIES:
        for e in registry:
            doc = (e.doc or "").splitlines()[0] if e.doc else ""
            extra = f" Orders: {', '.join(e.meta.get('orders', ()))}." if key == "space.block" else ""
            kind = " Whole-stage builder." if e.meta.get("kind") == "stage" else ""
            cite = paper(doc) if paper(doc) != "—" else PAPERS.get(f"{key}:{e.name}", "—")
            if doc and not doc.endswith("."):
                doc += "."
            lines.append(f"| `{key}` | `{e.name}` | {_cell(cite)} | {_cell(doc)}{kind}{extra} | "
                         f"{_cell(_options(e, args_key))} |")
    return "\n".join(lines)


PAGE_INTRO = """# Search-space choices

Every registered choice, its config key, the paper it implements and its options (fixed per choice
with `space.block_args` / `norm_args` / `attn_args`; defaults shown). Unit orders (`space.order`):
`post` (conv→norm→act, ResNet), `pre` (norm→act→conv, WRN), `white_conv` (whitening before the
conv); a block is only offered the orders it lists. This page is generated from the registries:
`.venv/bin/python -m space.choices --write docs/choices.md` (a test fails when it is stale).
"""


def choices_page() -> str:
    """The whole docs/choices.md page: the intro and the table."""
    return f"{PAGE_INTRO}\n{choices_markdown()}\n"


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m space.choices", description="the page of search-space choices")
    parser.add_argument("--write", metavar="PATH", help="write the page there (default: print it)")
    args = parser.parse_args(argv)
    if args.write:
        Path(args.write).write_text(choices_page())
    else:
        print(choices_page(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
