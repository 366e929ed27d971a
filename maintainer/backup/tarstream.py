"""Tar archives read and written as streams, one member at a time.

Backups take a docroot as the byte stream of a remote GNU ``tar -cf -`` and
pass those bytes through to pack objects unchanged (so a pack is a plain tar
that ``zstd -d | tar -x`` restores by hand), while this parser finds where
each member starts and hashes its content on the way. Restores parse packs
the same way and write a fresh tar stream for the remote ``tar -x``.

Handled: ustar and GNU headers (prefix field, base-256 sizes), GNU long
names (``L``/``K``) and POSIX pax headers (``x``; ``g`` is skipped).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
ENCODING = "utf-8"
ERRORS = "surrogateescape"  # file names are bytes; keep undecodable ones round-trippable

_META_TYPES = {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE}
#: a meta header's own content is held in memory: refuse absurd ones (a corrupt stream)
_META_LIMIT = 1024 * 1024

_NO_CONTENT = {
    tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE,
}  # fmt: skip

TYPE_NAMES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}


class TarFormatError(ValueError):
    """The bytes are not a tar stream we can read (corrupted or truncated)."""


@dataclass
class Member:
    path: str  # without a trailing '/'
    kind: str  # file, dir, symlink, hardlink, other
    size: int  # content bytes that follow the header
    mode: int
    mtime: float
    linkname: str
    #: where the member's first header block (long-name blocks included) starts in the stream
    offset: int


class TarReader:
    """Feed tar bytes in chunks of any size; get callbacks per member.

    ``on_start(member)`` comes before the member's content, ``on_data(member,
    chunk)`` for each piece of it, ``on_end(member)`` after it. ``on_raw(chunk)``
    (optional) sees every byte fed, in order, split at member boundaries, so a
    caller can copy the archive and cut it between members (``boundary`` is
    called right before the first byte of each new member's headers).
    """

    def __init__(
        self,
        on_start: Callable[[Member], None],
        on_data: Callable[[Member, memoryview], None],
        on_end: Callable[[Member], None],
        *,
        on_raw: Callable[[memoryview], None] | None = None,
        boundary: Callable[[], None] | None = None,
    ) -> None:
        self._on_start = on_start
        self._on_data = on_data
        self._on_end = on_end
        self._on_raw = on_raw
        self._boundary = boundary
        self.position = 0  # bytes consumed so far
        self.ended = False  # the end-of-archive blocks were seen
        self._header = bytearray()
        self._meta: tuple[bytes, int, bytearray] | None = None  # (type, size, content)
        self._pending: dict[str, str] = {}
        self._group_start: int | None = None
        self._member: Member | None = None
        self._left = 0  # content bytes of the current member still to come
        self._pad = 0  # padding bytes still to skip after it

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            if self.ended:
                self._raw(view)  # trailing zero blocks and tar's record padding
                return
            if self._member is not None and self._left:
                take = min(self._left, len(view))
                piece = view[:take]
                self._raw(piece)
                self._on_data(self._member, piece)
                self._left -= take
                view = view[take:]
                if not self._left:
                    self._end_content()
                continue
            if self._pad:
                take = min(self._pad, len(view))
                self._raw(view[:take])
                self._pad -= take
                view = view[take:]
                if not self._pad and self._meta is None and self._member is not None:
                    self._finish_member()
                continue
            if self._meta is not None:
                view = self._feed_meta(view)
                continue
            # a header block
            if not self._header and self._group_start is None:
                if self._boundary is not None:
                    self._boundary()
                self._group_start = self.position
            take = min(BLOCK - len(self._header), len(view))
            self._header += view[:take]
            self._raw(view[:take])
            view = view[take:]
            if len(self._header) == BLOCK:
                block = bytes(self._header)
                self._header.clear()
                self._header_block(block)

    def close(self) -> None:
        """The stream ended: it must have ended between members."""
        if self._member is not None or self._meta is not None or self._header or self._pad:
            raise TarFormatError(
                f"the archive is truncated (it stops inside a member at byte {self.position})"
            )
        if self._group_start is not None and not self.ended:
            raise TarFormatError("the archive is truncated (long-name headers without their member)")

    # ---------------------------------------------------------------- internals

    def _raw(self, view: memoryview) -> None:
        self.position += len(view)
        if self._on_raw is not None:
            self._on_raw(view)

    def _header_block(self, block: bytes) -> None:
        if block == b"\0" * BLOCK:
            if self._pending:
                raise TarFormatError("the archive is corrupt (a long-name header is followed by nothing)")
            self.ended = True
            self._group_start = None
            return
        try:
            info = tarfile.TarInfo.frombuf(block, ENCODING, ERRORS)
        except tarfile.HeaderError as exc:
            raise TarFormatError(f"bad tar header at byte {self.position - BLOCK}: {exc}") from None
        if info.type in _META_TYPES:
            if info.size > _META_LIMIT:
                raise TarFormatError(f"oversized tar meta header at byte {self.position - BLOCK}")
            self._meta = (info.type, info.size, bytearray())
            if info.size == 0:
                self._finish_meta()
            return
        path = self._pending.pop("path", info.name)
        linkname = self._pending.pop("linkpath", info.linkname)
        size = int(self._pending.pop("size", info.size))
        mtime = float(self._pending.pop("mtime", info.mtime))
        self._pending.clear()
        kind = TYPE_NAMES.get(info.type, "other")
        # as tar itself does, an unknown type is read like a regular file: its size counts
        has_content = info.type not in _NO_CONTENT
        offset = self._group_start if self._group_start is not None else self.position - BLOCK
        member = Member(
            path=path.rstrip("/") or path,
            kind=kind,
            size=size if has_content else 0,
            mode=info.mode,
            mtime=mtime,
            linkname=linkname,
            offset=offset,
        )
        self._member = member
        self._on_start(member)
        self._left = member.size
        if not self._left:
            self._end_content()

    def _end_content(self) -> None:
        assert self._member is not None
        self._pad = -self._member.size % BLOCK
        if not self._pad:
            self._finish_member()

    def _finish_member(self) -> None:
        assert self._member is not None
        member, self._member = self._member, None
        self._group_start = None
        self._on_end(member)

    def _feed_meta(self, view: memoryview) -> memoryview:
        assert self._meta is not None
        _, size, content = self._meta
        take = min(size - len(content), len(view))
        content += view[:take]
        self._raw(view[:take])
        view = view[take:]
        if len(content) == size:
            self._finish_meta()
        return view

    def _finish_meta(self) -> None:
        assert self._meta is not None
        kind, size, content = self._meta
        self._meta = None
        if kind == tarfile.GNUTYPE_LONGNAME:
            self._pending["path"] = content.rstrip(b"\0").decode(ENCODING, ERRORS)
        elif kind == tarfile.GNUTYPE_LONGLINK:
            self._pending["linkpath"] = content.rstrip(b"\0").decode(ENCODING, ERRORS)
        elif kind == tarfile.XHDTYPE:
            self._pending.update(_pax_records(bytes(content)))
        self._pad = -size % BLOCK


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<len> key=value\\n"`` records; only the keys a member needs."""
    wanted = {"path", "linkpath", "size", "mtime"}
    found: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("bad pax header record") from None
        record = data[space + 1 : pos + length - 1]  # without the trailing newline
        key, _, value = record.partition(b"=")
        name = key.decode("ascii", "replace")
        if name in wanted:
            found[name] = value.decode(ENCODING, ERRORS)
        pos += length
    return found


def header(
    path: str,
    kind: str,
    *,
    size: int = 0,
    mode: int = 0o644,
    mtime: float | str = 0,
    linkname: str = "",
    uid: int | None = None,
    gid: int | None = None,
) -> bytes:
    """The header block(s) of one member, POSIX pax format.

    ``mtime`` may be find's exact text (``1764400000.1234567890``): pax carries it to the
    nanosecond, so a restored file has the very mtime the backup saw.
    """
    info = tarfile.TarInfo(path + "/" if kind == "dir" else path)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}[kind]
    info.size = size if kind == "file" else 0
    info.mode = mode
    info.mtime = int(float(mtime))
    info.linkname = linkname
    info.uid = uid or 0
    info.gid = gid or 0
    if isinstance(mtime, str) and "." in mtime and mtime.rstrip("0").rstrip(".") != str(info.mtime):
        info.pax_headers = {"mtime": mtime}
    return info.tobuf(tarfile.PAX_FORMAT, ENCODING, ERRORS)


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)
