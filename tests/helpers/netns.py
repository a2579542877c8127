"""A multi-host test bed made of Linux network namespaces (root only).

``NetnsBed(hosts=N)`` builds N "hosts" and one "switch", each a network namespace
of its own::

    switch namespace:   bridge br0 ── v0  v1  ...  v{N-1}
                                      │   │         │      (veth pairs)
    host namespaces:                 eth0 eth0 ... eth0   10.X.Y.1, .2, ... /24

Every host has loopback up and one address on a private /24 (or a larger subnet
when there are more hosts than a /24 holds); hosts reach each other through the
bridge and nothing else. Nothing is created in the machine's own namespace: the
bridge lives in the switch namespace and every veth is created directly inside
the two namespaces it joins, so a bed cannot disturb the machine's network, and
two beds (two pytest workers) can even use the same subnet. The subnet is still
drawn at random so that traces from parallel beds are told apart.

Processes are started in a host with ``host.popen(argv)`` or ``host.run(argv)``
(``ip netns exec``). Teardown kills every process left in the bed's namespaces
(not only those started through the bed: ``ip netns pids`` finds them all) and
deletes every namespace, which also removes the veths and the bridge. It runs on
leaving the ``with`` block whatever happened inside, at interpreter exit for a
bed that was never closed, and, for a run that was killed before it could clean
up, the next bed removes leftovers whose creating process is gone (the creator's
pid is part of every namespace name).

``netns_available()`` says whether beds can be built here and, if not, why, in
words fit for ``pytest.skip``. Beds need root, the ``ip`` command (iproute2, which
``.ci/run`` installs where it is missing) and a kernel that permits namespaces,
veths and bridges.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["Namespace", "NetnsHost", "NetnsBed", "netns_available", "remove_leftovers"]

#: every namespace a bed creates starts with this, then the creator's pid
PREFIX = "sttnb"
#: interface names inside the namespaces (identical in every host)
HOST_INTERFACE = "eth0"
BRIDGE = "br0"
#: seconds a process gets between SIGTERM and SIGKILL at teardown
TERMINATE_GRACE = 2.0
#: seconds one ``ip`` command may take before the bed gives up
IP_TIMEOUT = 20.0

_NAME = re.compile(rf"^{PREFIX}-(\d+)-\d+-")
_sequence = itertools.count()
_open_beds: set[NetnsBed] = set()
_probe_result: tuple[bool, str] | None = None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({result.returncode}): "
                           f"{result.stderr.strip()}")
    return result


def _namespaces() -> list[str]:
    """Names of the namespaces ``ip netns`` knows (the first word of each line)."""
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_available() -> tuple[bool, str]:
    """Whether a bed can be built here: ``(True, "")`` or ``(False, reason)``.

    The checks are cheap ones first (platform, root, ``ip`` on PATH), then one
    real probe, done once per process: a namespace holding a bridge and a veth,
    created and deleted again.
    """
    global _probe_result
    if not sys.platform.startswith("linux"):
        return False, f"network namespaces need Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return False, "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return False, "the `ip` command (iproute2) is missing; .ci/run installs it"
    if _probe_result is None:
        _probe_result = _probe()
    return _probe_result


def _probe() -> tuple[bool, str]:
    name = f"{PREFIX}-{os.getpid()}-{next(_sequence)}-probe"
    try:
        _ip("netns", "add", name)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        return False, f"network namespaces are not permitted here: {error}"
    try:
        _ip("-n", name, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        return False, f"bridges or veths are not permitted in a network namespace: {error}"
    finally:
        _ip("netns", "del", name, check=False)
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Delete the namespaces of beds whose creating process no longer exists.

    A bed killed with SIGKILL (or a crashed interpreter) cannot clean up after
    itself; its namespaces carry the creator's pid, so whoever comes next can.
    Namespaces of live processes are left alone: they may be another run's bed.
    Returns the names deleted.
    """
    removed = []
    for name in _namespaces():
        match = _NAME.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _kill_namespace_processes(name)
        if _ip("netns", "del", name, check=False).returncode == 0:
            removed.append(name)
    return removed


def _kill_namespace_processes(name: str) -> None:
    """SIGKILL whatever still runs in namespace ``name`` and wait until it is gone."""
    deadline = time.monotonic() + TERMINATE_GRACE
    while True:
        pids = [int(p) for p in _ip("netns", "pids", name, check=False).stdout.split()]
        pids = [p for p in pids if p != os.getpid()]
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


class Namespace:
    """One network namespace of a bed; runs commands inside it."""

    def __init__(self, bed: NetnsBed, name: str) -> None:
        self._bed = bed
        #: the namespace's name, as ``ip netns`` lists it
        self.name = name

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs in this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` in this namespace and return its ``Popen``.

        The process leads a new session (``start_new_session``), so teardown can
        signal it together with anything it started. The bed terminates it at
        teardown if it is still running; keyword arguments go to ``Popen``.
        """
        kwargs.setdefault("start_new_session", True)
        process = subprocess.Popen(self.command(argv), **kwargs)
        self._bed._processes.append(process)
        return process

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60.0,
            **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` in this namespace to completion.

        Output is captured as text unless the caller says otherwise.

        Raises:
            subprocess.CalledProcessError: ``check`` is true and it exits non-zero.
            subprocess.TimeoutExpired: it ran longer than ``timeout`` (then it is killed).
        """
        if not {"stdout", "stderr", "capture_output"} & kwargs.keys():
            kwargs["capture_output"] = True
        kwargs.setdefault("text", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.command(argv), check=check, timeout=timeout, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class NetnsHost(Namespace):
    """A host of the bed: a namespace with loopback and one address on the bridge."""

    def __init__(self, bed: NetnsBed, name: str, index: int, address: str) -> None:
        super().__init__(bed, name)
        #: position in ``bed.hosts``
        self.index = index
        #: this host's IPv4 address on the bed's subnet, as a string
        self.address = address
        #: the interface that carries ``address``
        self.interface = HOST_INTERFACE


class NetnsBed:
    """N hosts on one bridge, each in a network namespace of its own.

    Use it as a context manager (``with NetnsBed(hosts=10) as bed:``), or call
    :meth:`open` and :meth:`close`. Building takes a few ``ip`` commands per host
    (about 20 ms each); a bed of 10 is ready in well under two seconds.

    Args:
        hosts: how many hosts, at least 1.
        subnet: the hosts' subnet (``"10.77.0.0/24"``); by default a random /24
            in 10.0.0.0/8, or the smallest larger subnet that fits ``hosts``.
        rng: where the random subnet comes from (tests may seed it).
    """

    def __init__(self, hosts: int, *, subnet: str | None = None,
                 rng: random.Random | None = None) -> None:
        if hosts < 1:
            raise ValueError("a bed needs at least one host")
        self.subnet = (ipaddress.IPv4Network(subnet) if subnet is not None
                       else _random_subnet(hosts, rng or random.Random()))
        if self.subnet.num_addresses - 2 < hosts:
            raise ValueError(f"{self.subnet} holds fewer than {hosts} hosts")
        self._count = hosts
        self._tag = f"{PREFIX}-{os.getpid()}-{next(_sequence)}"
        self._processes: list[subprocess.Popen] = []
        self._created: list[str] = []
        #: the namespace holding the bridge
        self.switch = Namespace(self, f"{self._tag}-sw")
        #: the hosts, in address order
        self.hosts: list[NetnsHost] = []
        self.closed = False

    def open(self) -> NetnsBed:
        """Build the bed. On any failure whatever was built is removed again.

        Raises:
            RuntimeError: an ``ip`` command failed (the message carries its error).
        """
        if self._created or self.closed:
            raise RuntimeError("a bed is opened once")
        remove_leftovers()
        _open_beds.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        sw = self.switch.name
        self._add_namespace(sw)
        _ip("-n", sw, "link", "set", "lo", "up")
        # No STP and no forwarding delay: ports forward as soon as they are up.
        _ip("-n", sw, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
            "forward_delay", "0")
        _ip("-n", sw, "link", "set", BRIDGE, "up")
        addresses = itertools.islice(self.subnet.hosts(), self._count)
        for index, address in enumerate(addresses):
            host = NetnsHost(self, f"{self._tag}-h{index}", index, str(address))
            self._add_namespace(host.name)
            port = f"v{index}"
            _ip("link", "add", port, "netns", sw, "type", "veth",
                "peer", "name", HOST_INTERFACE, "netns", host.name)
            _ip("-n", sw, "link", "set", port, "master", BRIDGE, "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
            _ip("-n", host.name, "addr", "add", f"{address}/{self.subnet.prefixlen}",
                "dev", HOST_INTERFACE)
            _ip("-n", host.name, "link", "set", HOST_INTERFACE, "up")
            self.hosts.append(host)

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)

    @property
    def addresses(self) -> list[str]:
        """Every host's address, in host order."""
        return [host.address for host in self.hosts]

    def namespaces(self) -> list[str]:
        """The names of the namespaces this bed created and still holds."""
        return list(self._created)

    def close(self) -> None:
        """Stop every process in the bed and delete every namespace.

        Processes started through the bed get SIGTERM, then SIGKILL after
        ``TERMINATE_GRACE`` seconds; anything else still inside a namespace gets
        SIGKILL. Every namespace is deleted even if an earlier step failed.
        Calling it again does nothing.

        Raises:
            RuntimeError: a namespace could not be deleted (all were attempted).
        """
        if self.closed:
            return
        self.closed = True
        _open_beds.discard(self)
        self._stop_processes()
        failures = []
        for name in reversed(self._created):
            try:
                _kill_namespace_processes(name)
                result = _ip("netns", "del", name, check=False)
            except (OSError, subprocess.SubprocessError) as error:
                failures.append(f"{name}: {error}")
                continue
            if result.returncode != 0 and name in _namespaces():
                failures.append(f"{name}: {result.stderr.strip()}")
        self._created.clear()
        if failures:
            raise RuntimeError("could not delete namespaces: " + "; ".join(failures))

    def _stop_processes(self) -> None:
        running = [p for p in self._processes if p.poll() is None]
        for process in running:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_GRACE
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for process in self._processes:
            # The caller's pipes to a process that is gone are of no further use.
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        self._processes.clear()

    def __enter__(self) -> NetnsBed:
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<NetnsBed {self._tag} {len(self.hosts)} hosts on {self.subnet}>"


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    """Signal ``process`` and its session (it leads one unless the caller said otherwise)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
            return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _random_subnet(hosts: int, rng: random.Random) -> ipaddress.IPv4Network:
    """A random subnet of 10.0.0.0/8 with room for ``hosts`` (at least a /24)."""
    prefix = min(24, 32 - (hosts + 1).bit_length())
    if prefix < 8:
        raise ValueError(f"{hosts} hosts do not fit in 10.0.0.0/8")
    base = ipaddress.IPv4Network("10.0.0.0/8")
    subnets = 1 << (prefix - 8)
    index = rng.randrange(subnets)
    return ipaddress.IPv4Network((int(base.network_address) + index * (1 << (32 - prefix)),
                                  prefix))


@atexit.register
def _close_open_beds() -> None:
    # A bed a test forgot to close (or one open when the interpreter is asked to
    # exit) must not outlive the process: namespaces persist until deleted.
    for bed in list(_open_beds):
        try:
            bed.close()
        except Exception as error:  # noqa: BLE001 - report and keep closing the others
            print(f"netns: {error}", file=sys.stderr)
