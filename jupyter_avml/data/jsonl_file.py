"""The JSONL file itself, before any row is parsed: what may be opened, how lines are read, what it really is.

- ``check_data_file``: the path must be a regular file (``/dev/zero``, a FIFO or a folder never reach a reader
  that would wait or fill memory forever);
- ``iter_jsonl_checked``: lines are read in blocks, never more than ``MAX_LINE_BYTES`` of one line in memory;
  a longer line is reported (file and line) and skipped; bytes that are not UTF-8 are reported per line;
- ``not_jsonl_reason``: a file that is one JSON document rather than JSON Lines (a COCO annotation file, a
  pretty-printed array) is recognised from its first bytes, so it gets one message that says what to do
  instead of one "not valid JSON" per line.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from jupyter_avml.errors import DataError

MAX_LINE_BYTES = 1 << 20
"""Longest JSONL line (1 MiB, UTF-8 bytes). A row with a thousand polygons is about 100 KB; a longer line is
reported as a problem of its line and skipped without being held in memory."""

READ_BLOCK = 1 << 20
PREVIEW_BYTES = 200  # how much of an overlong line is kept to show it
SNIFF_BYTES = 1 << 16
_BOM = b"\xef\xbb\xbf"
_COCO_IMAGES = re.compile(rb'"images"\s*:\s*\[')
_COCO_OTHER = re.compile(rb'"(annotations|categories)"\s*:\s*\[')


def check_data_file(path: Path, what: str = "JSONL file") -> None:
    """Raise ``DataError`` naming ``path`` unless it is an existing regular file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except NotADirectoryError:
        raise DataError(f"{path}: file not found (a folder of its path is a file)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        from jupyter_avml.config.loader import describe_file_kind

        raise DataError(f"{path}: not a regular file ({describe_file_kind(info.st_mode)}); a {what} is a text "
                        f"file")


def iter_jsonl_checked(path: str | os.PathLike, max_line_bytes: int = MAX_LINE_BYTES
                       ) -> Iterator[tuple[int, str, str | None]]:
    """``(line number, text, problem)`` of each non-blank line (numbers start at 1; text without EOL).

    ``problem`` is None, or why the line cannot be used: not UTF-8 (the text then has U+FFFD in place of the
    bad bytes), or longer than ``max_line_bytes`` (the text is then its first ``PREVIEW_BYTES`` bytes followed
    by ``...``). A UTF-8 byte-order mark at the start is skipped.
    """
    number = 0
    with open(path, "rb") as handle:
        for lines in _line_blocks(handle, max_line_bytes):
            for raw in lines:
                number += 1
                if raw.__class__ is _Overlong:
                    preview = raw.preview[3:] if number == 1 and raw.preview.startswith(_BOM) else raw.preview
                    yield number, preview.decode("utf-8", "replace").strip() + "...", (
                        f"line too long: {raw.length:,} bytes (at most {max_line_bytes:,} per line); each line of "
                        f"a JSONL file is one row")
                    continue
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[3:]
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    yield number, raw.decode("utf-8"), None
                except UnicodeDecodeError as exc:
                    yield number, raw.decode("utf-8", "replace"), f"not UTF-8 text: {exc.reason} at byte {exc.start}"


class _Overlong:
    """A line longer than the limit: its first bytes and its length (the rest was never kept)."""

    __slots__ = ("preview", "length")

    def __init__(self, preview: bytes, length: int):
        self.preview = preview
        self.length = length

    def grow(self, more: bytes) -> None:
        """Count ``more`` bytes of the line, keeping its first ``PREVIEW_BYTES`` only."""
        if len(self.preview) < PREVIEW_BYTES:
            self.preview += more[:PREVIEW_BYTES - len(self.preview)]
        self.length += len(more)


def _line_blocks(handle, limit: int) -> Iterator[list]:
    """The lines of ``handle`` (blank ones included, without EOL), one list per block read; a line over
    ``limit`` bytes comes as an ``_Overlong``, and no more than ``limit`` bytes of one line are ever kept."""
    carry = b""    # the start of a line that the next block continues
    over = None    # an overlong line whose rest is being skipped
    while True:
        block = handle.read(READ_BLOCK)
        if not block:
            break
        lines = block.split(b"\n")
        tail = lines.pop()  # the unfinished last line of the block (b"" when the block ends with a newline)
        if lines:
            if over is not None:
                over.grow(lines[0])
                lines[0], over = over, None
            elif carry:
                lines[0] = carry + lines[0]
            # Only a line joined with the carry can be longer than the limit, unless a block is (a small limit).
            for i in range(len(lines) if len(block) > limit else 1):
                line = lines[i]
                if line.__class__ is bytes and len(line) > limit:
                    lines[i] = _Overlong(line[:PREVIEW_BYTES], len(line))
            carry = b""
            if len(tail) > limit:
                over = _Overlong(tail[:PREVIEW_BYTES], len(tail))
            else:
                carry = tail
            yield lines
        elif over is not None:
            over.grow(tail)
        else:
            carry += tail
            if len(carry) > limit:
                over, carry = _Overlong(carry[:PREVIEW_BYTES], len(carry)), b""
    if over is not None:
        yield [over]
    elif carry:
        yield [carry]


def not_jsonl_reason(path: Path) -> str | None:
    """Why ``path`` is a JSON document rather than JSON Lines, judged from its first bytes; None when it may
    well be JSON Lines (then each line is checked as usual)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return None  # the line reader reports what is wrong with the file
    if head.startswith(_BOM):
        head = head[3:]
    head = head.lstrip()
    if head.startswith(b"{") and _COCO_IMAGES.search(head) and _COCO_OTHER.search(head):
        return (f"looks like a COCO annotation file (one JSON document with images, annotations and categories), "
                f"not JSON Lines; convert it first: avml convert coco {path} -o {path.with_suffix('.jsonl')} "
                f"--images IMAGES_FOLDER")
    first_line = head.split(b"\n", 1)[0].strip()
    if first_line in (b"{", b"["):
        kind = "an array" if first_line == b"[" else "an object"
        return (f"is one JSON document ({kind} spread over several lines), not JSON Lines; a JSONL file has one "
                f"complete JSON object per line (e.g. write it with json.dumps per row, or jq -c '.[]')")
    return None
