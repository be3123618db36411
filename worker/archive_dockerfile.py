"""Finds the Dockerfile of an archive streamed to the engine (worker/archive_stream.py) as the
archive passes, so that the archive is read once: a thread parses the gzip tar from the chunks
the stream hands it. The stream asks for the Dockerfile before its last chunk, when every member
has passed and the engine, which reads the Dockerfile only from the whole context, has not yet
started the build.

The engine builds the last entry of that name; an entry that is a link, or under a directory
that is one, is refused rather than followed (the user's mistake, said so)."""

from __future__ import annotations

import gzip
import posixpath
import queue
import tarfile
import threading
import zlib

from worker.build_types import missing_dockerfile
from worker.source import SourceError

# Chunks waiting for the parser: the stream blocks beyond this, so memory stays bounded.
_BACKLOG = 8
_END = b""


class ArchiveDockerfile:
    """The Dockerfile at `path` in the archive fed chunk by chunk; `text()` after the last chunk."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = posixpath.normpath(path)
        self.max_bytes = max_bytes
        self._chunks: queue.Queue[bytes] = queue.Queue(_BACKLOG)
        self._pending, self._offset = b"", 0
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

    def read(self, size: int = -1) -> bytes:
        """The gzip reader's end (a file object): the archive's bytes as fed."""
        while self._offset >= len(self._pending):
            if self._ended:
                return b""
            chunk = self._chunks.get()
            self._ended = chunk == _END
            self._pending, self._offset = chunk, 0
        end = len(self._pending) if size < 0 else self._offset + size
        taken = self._pending[self._offset : end]
        self._offset += len(taken)
        return taken

    def _parse(self) -> None:
        # GzipFile, not tarfile's own "r|gz": the archive may be several gzip members end to end
        # (`buildfarm deploy` starts one where its compression level changes), which the engine
        # reads whole; tarfile's stream reads the first member only, then fed the rest to a
        # finished decompressor, which copied all it had been given at each read (a 100 MiB
        # archive: minutes of CPU).
        try:
            with (
                gzip.GzipFile(fileobj=self, mode="rb") as inflated,
                tarfile.open(fileobj=inflated, mode="r|") as tar,
            ):
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
