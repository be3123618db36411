"""Finds the Dockerfile of an archive streamed to the engine (worker/archive_stream.py) as the
archive passes, so that the archive is read once: a thread parses the gzip tar from the chunks
the stream hands it. The stream asks for the Dockerfile before its last chunk, when every member
has passed and the engine, which reads the Dockerfile only from the whole context, has not yet
started the build.

The engine builds the last entry of that name; an entry that is a link, or under a directory
that is one, is refused rather than followed (the user's mistake, said so)."""

from __future__ import annotations

import posixpath
import queue
import tarfile
import threading
import zlib
from collections.abc import Callable

from worker.build_types import missing_dockerfile
from worker.source import SourceError

# Chunks waiting for the parser: the stream blocks beyond this, so memory stays bounded.
_BACKLOG = 8
_END = b""
# zlib's window bits for a gzip member.
_GZIP = zlib.MAX_WBITS | 16
# What zlib is given at once, and the most it may inflate it to in one call (a bomb's bound).
_IN_BYTES = 64 * 1024
_OUT_BYTES = 256 * 1024


class ArchiveDockerfile:
    """The Dockerfile at `path` in the archive fed chunk by chunk; `text()` after the last chunk."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = posixpath.normpath(path)
        self.max_bytes = max_bytes
        self._chunks: queue.Queue[bytes] = queue.Queue(_BACKLOG)
        self._ended = False
        self._data: bytes | None = None
        self._problem: str | None = None
        self._not_regular = False
        self._thread = threading.Thread(target=self._parse, name="archive-dockerfile", daemon=True)
        self._thread.start()

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.put(chunk)

    def close(self) -> None:
        """Ends the parse (also when the stream stopped early); waits for the parser."""
        if self._thread.is_alive():
            self._chunks.put(_END)
            self._thread.join()

    def text(self) -> str:
        """The Dockerfile's text; SourceError if the archive has none the farm can check."""
        self.close()
        if self._problem:
            raise SourceError(self._problem)
        if self._not_regular:
            raise SourceError(
                f"The Dockerfile '{self.path}' is not a regular file in the archive (a link, a "
                "directory…): the farm reads a Dockerfile only as a regular file"
            )
        if self._data is None:
            raise SourceError(missing_dockerfile(self.path))
        if len(self._data) > self.max_bytes:
            raise SourceError(f"The Dockerfile '{self.path}' is larger than {self.max_bytes} bytes")
        return self._data.decode("utf-8", "replace")

    def _next_chunk(self) -> bytes:
        """The next chunk fed; b"" once the stream ended."""
        if self._ended:
            return b""
        chunk = self._chunks.get()
        self._ended = chunk == _END
        return chunk

    def _parse(self) -> None:
        try:
            with tarfile.open(fileobj=_Inflated(self._next_chunk), mode="r|") as tar:
                for member in tar:
                    self._see(tar, member)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            self._problem = f"The archive is not a valid .tar.gz: {e}"
        finally:
            # Whatever stopped the parse, the stream must never block on a full backlog.
            while not self._ended:
                self._ended = self._chunks.get() == _END

    def _see(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = posixpath.normpath(member.name)
        if member.issym() and self.path.startswith(name + "/"):
            self._problem = (
                f"The Dockerfile '{self.path}' is under '{name}', a link in the archive: "
                "the farm reads a Dockerfile only as a regular file, not through links"
            )
        elif name == self.path:
            # A later entry of the same name replaces an earlier one, as in the engine.
            self._data = tar.extractfile(member).read(self.max_bytes + 1) if member.isreg() else None
            self._not_regular = not member.isreg()


class _Inflated:
    """The tar inside a gzip stream of one member or several end to end, inflated as tarfile reads
    it (a file object). tarfile's own "r|gz" reads the first member only, though `buildfarm deploy`
    starts one where its compression level changes and the engine reads them all; and it fed the
    rest to a finished decompressor, which copied all it had been given at each read (100 MiB:
    minutes of CPU). Unlike GzipFile it checks no CRC, which doubled the CPU of this parse: the
    engine checks the archive it builds; this only looks for the Dockerfile."""

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk
        self._inflater = zlib.decompressobj(_GZIP)
        self._input = memoryview(b"")
        self._output, self._offset = b"", 0

    def read(self, size: int = -1) -> bytes:
        while self._offset >= len(self._output):
            self._output, self._offset = self._inflate(), 0
            if not self._output:
                return b""
        end = len(self._output) if size < 0 else self._offset + size
        taken = self._output[self._offset : end]
        self._offset += len(taken)
        return taken

    def _inflate(self) -> bytes:
        """The next inflated bytes, b"" at the stream's end; zlib.error for bytes that are not gzip."""
        while True:
            if not self._input:
                chunk = self._next_chunk()
                if not chunk:
                    return b""  # tarfile tells a truncated tar from a whole one
                self._input = memoryview(chunk)
            if self._inflater.eof:  # a member ended where another starts
                self._inflater = zlib.decompressobj(_GZIP)
            given = self._input[:_IN_BYTES]
            output = self._inflater.decompress(given, _OUT_BYTES)
            left = len(self._inflater.unconsumed_tail) + len(self._inflater.unused_data)
            self._input = self._input[len(given) - left :]
            if output:
                return output
