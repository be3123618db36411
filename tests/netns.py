"""Hosts for end-to-end tests, made of network namespaces: each is joined to the root namespace by
a veth pair, and every address lives on a veth the test created, so traffic between "hosts" never
leaves this machine. Without network namespaces (not root, no iproute2) the tests fail."""

from __future__ import annotations

import contextlib
import ctypes
import socket
import subprocess
import threading
import uuid

import pytest

_CLONE_NEWNET = 0x40000000


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


class Host:
    """A network namespace joined to the root namespace by a veth pair: `gateway` is the root
    namespace's end, `address` the namespace's (10.<net>.<index>.0/30)."""

    def __init__(self, index: int, net: int = 231) -> None:
        tag = uuid.uuid4().hex[:6]
        self.netns, self.outer, self.inner = f"bf-h{index}-{tag}", f"bfo{index}{tag}", f"bfi{index}{tag}"
        self.gateway, self.address = f"10.{net}.{index}.1", f"10.{net}.{index}.2"
        try:
            ip("netns", "add", self.netns)
            ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
            ip("link", "set", self.inner, "netns", self.netns)
            ip("addr", "add", f"{self.gateway}/30", "dev", self.outer)
            ip("link", "set", self.outer, "up")
            self.ip_inside("addr", "add", f"{self.address}/30", "dev", self.inner)
            self.ip_inside("link", "set", self.inner, "up")
            self.ip_inside("link", "set", "lo", "up")
        except BaseException:
            # A half-made host would shadow the next one's routes.
            self.remove()
            raise

    def ip_inside(self, *args: str) -> str:
        return ip("netns", "exec", self.netns, "ip", *args)

    def command(self, *args: str) -> list[str]:
        """ARGS run inside the namespace."""
        return ["ip", "netns", "exec", self.netns, *args]

    def add_address(self, address: str) -> None:
        """Gives the namespace one more address, routed to it from the root namespace: a test may
        then use a private, link-local or public address while its traffic stays here."""
        self.ip_inside("addr", "add", f"{address}/32", "dev", self.inner)
        ip("route", "add", f"{address}/32", "via", self.address, "dev", self.outer)

    def add_root_address(self, address: str) -> None:
        """Gives the root namespace (the machine itself) one more address, on this host's veth;
        the namespace routes everything to the root namespace, so it can answer from there too."""
        ip("addr", "add", f"{address}/32", "dev", self.outer)
        self.ip_inside("route", "replace", "default", "via", self.gateway)

    def routes_here(self, address: str) -> bool:
        """True when the root namespace sends ADDRESS to this host (and nowhere else)."""
        return f"dev {self.outer} " in ip("route", "get", address)

    @contextlib.contextmanager
    def loopback_forwarded(self, port: int):
        """127.0.0.1:PORT inside the namespace leads to 127.0.0.1:PORT of the machine, for as long
        as the context lasts (an engine of the namespace pushes to the farm's loopback registry)."""
        listener, ending = _listening_inside(self.netns, port), threading.Event()

        def serve() -> None:
            while not ending.is_set():
                try:
                    inner, _ = listener.accept()
                except OSError:
                    continue
                try:
                    outer = socket.create_connection(("127.0.0.1", port))
                except OSError:
                    inner.close()
                    continue
                for source, sink in ((inner, outer), (outer, inner)):
                    threading.Thread(target=pipe, args=(source, sink), daemon=True).start()

        server = threading.Thread(target=serve, name=f"forward-{port}", daemon=True)
        server.start()
        try:
            yield
        finally:
            ending.set()
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
            server.join(5)
            listener.close()

    def link(self, up: bool) -> None:
        ip("link", "set", self.outer, "up" if up else "down")

    def remove(self) -> None:
        # Deleting the link deletes its routes and the root namespace's addresses on it too.
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


def _listening_inside(netns: str, port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:PORT of NETNS, made by a thread of its own that enters the
    namespace (setns moves only the calling thread) and ends there."""
    made: list[socket.socket | OSError] = []

    def enter_and_listen() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/run/netns/{netns}") as inside:
            if libc.setns(inside.fileno(), _CLONE_NEWNET) != 0:
                made.append(OSError(ctypes.get_errno(), f"setns into {netns}"))
                return
        try:
            made.append(socket.create_server(("127.0.0.1", port)))
        except OSError as e:
            made.append(e)

    thread = threading.Thread(target=enter_and_listen)
    thread.start()
    thread.join()
    if isinstance(made[0], OSError):
        raise made[0]
    return made[0]


def pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copies one direction of a forwarded connection until its end; a broken side breaks both."""
    try:
        while data := source.recv(64 * 1024):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def hosts(*indices: int, net: int = 231):
    """Hosts of these indices, removed at the end; the test fails if they cannot be made."""
    made: list[Host] = []
    try:
        try:
            for index in indices:
                made.append(Host(index, net))
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            pytest.fail(f"network namespaces cannot be created here (root and iproute2 are needed): {detail}")
        yield made
    finally:
        for host in made:
            host.remove()
