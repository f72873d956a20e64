"""Reading the files a config names (the config itself, events, listings, secrets), bounded.

A path may name anything: a directory, /dev/zero, a FIFO nobody writes to, a file of gigabytes,
UTF-16 text. Each is refused with a sentence (never an exception, never a blocked read, never a
read past the size cap) so that the caller can report it at the key that named the file.
"""

from __future__ import annotations

import codecs
import os
import stat

#: Byte-order marks of encodings a config file must not be in, and their names.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_CHUNK = 1 << 20


class FileProblem(Exception):
    """Why a named file cannot be used: `str()` is a sentence that names the file, `reason`
    the same without the name."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_readable(path: str, limit: int) -> os.stat_result:
    """The file's status if it is a regular file of at most `limit` bytes; else FileProblem.
    Nothing is opened, so a FIFO or a device is never touched."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise FileProblem(f"cannot read {path}: {exc.strerror}", str(exc.strerror)) from None
    except ValueError:  # an embedded NUL byte
        raise FileProblem("the path has a NUL byte in it") from None
    kind = _kind(info.st_mode)
    if kind is not None:
        raise FileProblem(f"{path} is {kind}, not a regular file", f"it is {kind}")
    if info.st_size > limit:
        too_big = f"larger than {_size(limit)} ({_size(info.st_size)})"
        raise FileProblem(f"{path} is {too_big}", f"it is {too_big}")
    return info


def read_bounded(path: str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; FileProblem for anything else.

    The file is opened without blocking (a FIFO swapped in after the check cannot hang the
    read) and read no further than `limit` + 1 bytes whatever its size claims.
    """
    check_readable(path, limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise FileProblem(f"cannot read {path}: {exc.strerror}") from None
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise FileProblem(f"{path} is {kind}, not a regular file")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise FileProblem(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if total > limit:
        raise FileProblem(f"{path} is larger than {_size(limit)}")
    return b"".join(chunks)


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text (a leading byte-order mark is dropped); FileProblem for other encodings,
    naming the line of the first byte that is not UTF-8."""
    for bom, encoding in _FOREIGN_BOMS:
        if data.startswith(bom):
            raise FileProblem(f"{name} is {encoding} text: save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileProblem(
            f"{name} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line}"
        ) from None


def read_text(path: str, limit: int) -> str:
    """`read_bounded`, then `decode_text`."""
    return decode_text(read_bounded(path, limit), path)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} bytes"
