"""The README's table of search-space choices, generated from the registries.

    .venv/bin/python -m search.results.report_choices      # prints the Markdown table to paste into README.md

One row per registered block, norm, attention and activation: its config key (``space.block`` ...),
its name, the paper it implements (found in its one-line doc), what it does (the doc) and its options
with defaults (for ``space.block_args`` / ``norm_args`` / ``attn_args``). tests/test_docs.py checks
that README.md has a row for every registered choice and none for an unregistered one.
"""
from __future__ import annotations

import re

from space.registry import ACTIVATIONS, ATTENTIONS, BLOCKS, NORMS, Entry

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


if __name__ == "__main__":
    print(choices_markdown())
