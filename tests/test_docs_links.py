"""Every relative link in README.md and docs/*.md resolves: the file exists, and a #fragment
names a heading of the target (GitHub's anchor rule)."""

from __future__ import annotations

import re
from pathlib import Path

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")
COMMENT = re.compile(r"<!--.*?-->", re.S)
INLINE_CODE = re.compile(r"`[^`]*`")


def _prose(text: str, keep_code: bool = False) -> list[tuple[int, str]]:
    """(line number, line) of the text outside code fences and HTML comments; inline code is
    dropped (links inside it are not links) unless ``keep_code`` (a heading's anchor keeps it)."""
    text = COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line if keep_code else INLINE_CODE.sub("", line)))
    return out


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file: lower case, punctuation but '-' and '_'
    dropped, spaces to '-', repeats numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line in _prose(path.read_text(encoding="utf-8"), keep_code=True):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        k = seen.get(slug, 0)
        seen[slug] = k + 1
        out.add(slug if k == 0 else f"{slug}-{k}")
    return out


def broken(root: Path) -> list[str]:
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    bad = []
    for md in files:
        raw = md.read_text(encoding="utf-8")
        for lineno, line in _prose(raw):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                path_part, _, frag = target.partition("#")
                dest = (md.parent / path_part).resolve() if path_part else md
                where = f"{md.relative_to(root)}:{lineno}: {target}"
                if not dest.exists():
                    bad.append(f"{where}: no such file")
                elif frag and dest.suffix == ".md" and frag not in anchors(dest):
                    bad.append(f"{where}: no heading #{frag} in {dest.relative_to(root)}")
    return bad


ROOT = Path(__file__).resolve().parents[1]


def test_every_relative_link_resolves() -> None:
    assert broken(ROOT) == []


def test_a_broken_link_and_a_wrong_anchor_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title here\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md#title-here) [gone](docs/b.md) [anchor](docs/a.md#nope)\n"
        "`[code](docs/none.md)` is not a link\n")
    found = broken(tmp_path)
    assert len(found) == 2
    assert "docs/b.md: no such file" in found[0] and "#nope" in found[1]
