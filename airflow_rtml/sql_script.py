"""Flink SQL scripts as text: split a script into statements, strip comments, find a table's DDL.

Shared by the SQL Gateway hook (which runs statements), the submit operator (which fingerprints them) and the
backfill (which swaps a job's source and sink DDL). No Airflow import here.
"""

from __future__ import annotations

import re

from airflow_rtml.exceptions import FlinkSqlError

_BLOCK_START = re.compile(r"^\s*EXECUTE\s+STATEMENT\s+SET\s+BEGIN\b", re.IGNORECASE)
_BLOCK_END = re.compile(r"^\s*END\s*$", re.IGNORECASE)


_QUOTED_OR_COMMENT = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`)|--[^\n]*|/\*.*?\*/", re.DOTALL)


def strip_comments(stmt: str) -> str:
    """The statement without `--` and `/* */` comments; quoted text is kept as it is (``'x--y'`` is no comment)."""
    return _QUOTED_OR_COMMENT.sub(lambda m: m.group(1) or "", stmt).strip()


def split_statements(sql: str) -> list[str]:
    """Split a SQL script on ``;`` outside quotes and comments; ``EXECUTE STATEMENT SET BEGIN … END;`` stays
    one statement. Comment-only pieces are dropped."""
    pieces, buf, i, quote = [], [], 0, None
    while i < len(sql):
        ch = sql[i]
        if quote:
            buf.append(ch)
            if ch == quote:
                if sql[i + 1:i + 2] == quote:  # doubled quote = escaped quote
                    buf.append(sql[i + 1])
                    i += 1
                else:
                    quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
            buf.append(ch)
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = len(sql) if end < 0 else end
            buf.append(sql[i:end])
            i = end - 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = len(sql) if end < 0 else end + 2
            buf.append(sql[i:end])
            i = end - 1
        elif ch == ";":
            pieces.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    pieces.append("".join(buf))

    out: list[str] = []
    block: list[str] | None = None
    for piece in pieces:
        text = strip_comments(piece)
        if block is not None:
            block.append(piece.strip())
            if _BLOCK_END.match(text):
                out.append(";\n".join(p for p in block[:-1] if strip_comments(p)) + ";\nEND")
                block = None
            continue
        if not text:
            continue
        if _BLOCK_START.match(text):
            block = [piece.strip()]
        else:
            out.append(piece.strip())
    if block is not None:
        raise FlinkSqlError(
            "An EXECUTE STATEMENT SET BEGIN block has no END. To fix this, close it with 'END;'.",
            statement=";\n".join(block),
        )
    return out
