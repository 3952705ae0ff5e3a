"""Text read from results files (model ids, task and metric names, commands, devices, versions) put into the
markdown we render (leaderboards, model cards) as data, never as markup.

A model id is whatever the user passed to `--model` (a path, a Hub id): a `|` in it would split a table row and
shift every later cell one column, a newline would end the row and start a heading or a link of its own. So text
goes through `markdown_text` (one line, markdown's active characters backslash-escaped, which GitHub and every
CommonMark renderer show as the character itself) or `markdown_code` (one line, in a code span whose fence no
backtick run inside can close).
"""

from __future__ import annotations

import re
import unicodedata

# Characters that start markup anywhere in a line (links, images, HTML, code, emphasis, strikethrough, entities,
# table cells); `#` and `>` only at a line start, escaped anyway since a caller may put text there.
_ACTIVE = re.compile(r"([\\`*\[\]<>#|!~&])")
# `_` emphasises only at a word boundary (CommonMark never reads intraword `_`): `mean_per_class_recall` stays.
_BOUNDARY_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def one_line(text: str) -> str:
    """`text` with every line break and other control character as a space: a cell or list item stays one line."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in str(text))


def markdown_text(text: str) -> str:
    """`text` as literal markdown inline text (one line)."""
    escaped = _ACTIVE.sub(r"\\\1", one_line(text))
    return _BOUNDARY_UNDERSCORE.sub(r"\\_", escaped)


def markdown_code(text: str) -> str:
    """`text` as one inline code span (one line), fenced by more backticks than any run inside it."""
    text = one_line(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"
