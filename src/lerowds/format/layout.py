"""Where an episode's members may lie: member ⊂ span ⊂ shard, checked for every row when the table loads,
and the tar header in front of each member, checked when an episode is admitted.

An episode table comes from whoever published the dataset. Its offsets and sizes are read with ``pread``
and handed to decoders, so a row that points outside its span, its shard or the integers is refused here,
naming the episode, shard and member, before any byte is read (a huge size would allocate first, a negative
one fail as a bare ``OSError``). A row that points at a real member of another episode or camera is caught
at admission by the member's tar header, which sits in the 512 bytes before its data, inside the span.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Sequence

import numpy as np

from lerowds.errors import FormatError
from lerowds.format.names import (
    EPISODES_FILE,
    SHARDS_DIR,
    TAR_BLOCK,
    episode_key,
    json_member,
    parquet_member,
    video_member,
)
from lerowds.format.table import EpisodeTable, video_columns

NAME_FIELD = 100  # bytes of a tar header's name field; longer names (GNU) put the full name in a block before

SHARD_NAME = re.compile(rf"{SHARDS_DIR}/shard-[0-9]{{6,}}\.tar")


def check_shard_name(name: object, where: str) -> str:
    """``name`` if it is one of the format's shard names (``shards/shard-NNNNNN.tar``); anything else (an
    absolute path, ``..``, an encoded ``%2e%2e``, a backslash, another directory) is a FormatError."""
    if not isinstance(name, str) or SHARD_NAME.fullmatch(name) is None:
        raise FormatError(
            f"{where}: shard name {name!r} is not a lerowds shard name ({SHARDS_DIR}/shard-NNNNNN.tar); "
            "refusing to open it: the index is not a lerowds index or was tampered with"
        )
    return name


def member_names(episode: int, video_keys: Sequence[str]) -> tuple[str, ...]:
    """The tar member names of an episode, in table order: json, parquet, one clip per video key."""
    key = episode_key(episode)
    return (json_member(key), parquet_member(key), *(video_member(key, k) for k in video_keys))


def member_columns(video_keys: Sequence[str]) -> list[tuple[str, str, str]]:
    """(what, offset column, size column) of each member, in table order."""
    cols = [("json member", "json_offset", "json_size"), ("parquet member", "parquet_offset", "parquet_size")]
    cols += [(f"clip of camera {k!r}", *video_columns(k)) for k in video_keys]
    return cols


def header_blocks(name: str) -> int:
    """Tar blocks in front of a member's data: its header, and for a name over 100 bytes (GNU) the
    ``././@LongLink`` header and the blocks of the full name (NUL-terminated)."""
    n = len(name.encode("utf-8", "surrogateescape"))
    return 1 if n <= NAME_FIELD else 2 + -(-(n + 1) // TAR_BLOCK)


def _bad_rows(
    table: EpisodeTable, rows: slice, sizes: np.ndarray, columns: list[tuple[str, str, int]]
) -> list[np.ndarray]:
    """Masks of the rows in ``rows`` whose span (first), then each member (``(offset column, size column,
    header bytes)``), lies outside where it must. A row is bad if any single value is out of range, so sums
    are only trusted where every value is within a shard's size (no int64 overflow)."""
    limit = sizes[np.asarray(table["shard"][rows], np.int64)]  # shard numbers are checked before
    start = np.asarray(table["offset"][rows], np.int64)
    size = np.asarray(table["size"][rows], np.int64)
    bad_span = (start < 0) | (size <= 0) | (start > limit) | (size > limit)
    bad_span |= (start + size > limit) | (start % TAR_BLOCK != 0) | (size % TAR_BLOCK != 0)
    masks = [bad_span]
    for off_col, size_col, head in columns:
        off = np.asarray(table[off_col][rows], np.int64)
        msize = np.asarray(table[size_col][rows], np.int64)
        bad = (off < 0) | (msize <= 0) | (off > limit) | (msize > limit) | (off % TAR_BLOCK != 0)
        bad |= (off - head < start) | (off + msize > start + size)
        masks.append(bad & ~bad_span)
    return masks


def layout_problems(
    table: EpisodeTable,
    shard_sizes: Sequence[int],
    shard_names: Sequence[str],
    video_keys: Sequence[str],
    *,
    chunk: int = 1 << 16,
) -> list[str]:
    """Rows whose members, headers included, do not lie inside their span, or whose span does not lie inside
    its shard (``shard_sizes`` from the index); sizes and offsets must be block-aligned where tar puts them.
    Each problem names the episode, shard and member; shard numbers must already be in range. Checked
    ``chunk`` rows at a time (a million-episode table in ~0.1 CPU-s, a few MB)."""
    members = member_columns(video_keys)
    names = member_names(0, video_keys)  # the header's size depends on the name's length only
    columns = [(o, z, header_blocks(n) * TAR_BLOCK) for (_, o, z), n in zip(members, names)]
    sizes = np.asarray(shard_sizes, np.int64)
    first: list[int | None] = [None] * (1 + len(columns))
    counts = [0] * (1 + len(columns))
    for lo in range(0, len(table), chunk):
        for i, mask in enumerate(_bad_rows(table, slice(lo, lo + chunk), sizes, columns)):
            bad = np.flatnonzero(mask)
            if bad.size:
                first[i] = lo + int(bad[0]) if first[i] is None else first[i]
                counts[i] += int(bad.size)

    def value(column: str, r: int) -> int:
        return int(table[column][r])

    problems = []
    for i, r in enumerate(first):
        if r is None:
            continue
        start, end = value("offset", r), value("offset", r) + value("size", r)
        if i == 0:
            what = (
                f"span offset={start} size={value('size', r)} does not lie inside its shard "
                f"({int(sizes[value('shard', r)])} bytes) in whole {TAR_BLOCK}-byte blocks"
            )
        else:
            off_col, size_col, head = columns[i - 1]
            what = (
                f"{members[i - 1][0]} offset={value(off_col, r)} size={value(size_col, r)} (after its "
                f"{head}-byte tar header) does not lie inside the episode's span, bytes {start}-{end - 1}"
            )
        more = f" ({counts[i]} rows like it)" if counts[i] > 1 else ""
        problems.append(
            f"episode {value('episode_index', r)} ({shard_names[value('shard', r)]}): {what}{more}"
        )
    return problems


def check_layout(
    table: EpisodeTable,
    shard_sizes: Sequence[int],
    shard_names: Sequence[str],
    video_keys: Sequence[str],
    where: str = EPISODES_FILE,
) -> None:
    """Raise a FormatError naming the first row whose members or span lie outside where they must."""
    problems = layout_problems(table, shard_sizes, shard_names, video_keys)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise FormatError(
            f"{where}: {problems[0]}{more}: the episode table does not describe its shards; "
            "re-download or re-convert the dataset"
        )


# ----------------------------------------------------------------------------------------------- admission
def header_problem(blocks: bytes, name: str, size: int) -> str | None:
    """Why ``blocks`` (the ``header_blocks(name)`` tar blocks right before a member's data) are not the header
    of a ``size``-byte member called ``name``; None when they are."""
    expected = name.encode("utf-8", "surrogateescape")
    header = blocks[-TAR_BLOCK:]
    try:
        info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    except tarfile.TarError as e:
        return f"no tar header in front of it ({e})"
    stored = header[:NAME_FIELD].split(b"\0", 1)[0]
    if len(expected) > NAME_FIELD:
        full = blocks[TAR_BLOCK : TAR_BLOCK + len(expected) + 1]
        stored = full[:-1] if full.endswith(b"\0") and stored == expected[:NAME_FIELD] else stored
    if stored != expected:
        found = stored.decode("utf-8", "replace")
        return f"the tar member there is {found!r}, not {name!r}"
    if info.size != size:
        return f"the tar member {name!r} there has {info.size} bytes, the episode table says {size}"
    return None


def check_member_headers(
    read: Callable[[int, int], bytes],
    episode: int,
    members: Sequence[tuple[int, int]],
    video_keys: Sequence[str],
    where: str,
) -> None:
    """Check that each member (data offset, size) of ``episode`` is the format's member of that episode and
    camera, by its tar header; ``read(offset, size)`` reads the same coordinates as ``members``.
    A mismatch is a FormatError naming ``where`` (episode and shard), the member and what is there."""
    for (what, _, _), name, (off, size) in zip(
        member_columns(video_keys), member_names(episode, video_keys), members
    ):
        head = header_blocks(name) * TAR_BLOCK
        problem = header_problem(read(off - head, head), name, size)
        if problem is not None:
            raise FormatError(
                f"{where}: its {what} (offset {off}, {size} bytes): {problem}: {EPISODES_FILE} points this "
                "member at bytes of another episode or camera; re-download or re-convert the dataset"
            )
