"""The namespace test bed itself: hosts reach each other by their own addresses over
UDP, stay isolated from the machine's network, and leave nothing behind."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import netns
from tests.helpers.netns import NetnsBed, netns_available

_available, _reason = netns_available()
pytestmark = pytest.mark.skipif(not _available, reason=_reason)

#: answers every datagram with ``<sender ip> <data>``; prints its port when bound
ECHO_SERVER = textwrap.dedent("""
    import socket, sys
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((sys.argv[1], 0))
    print(sock.getsockname()[1], flush=True)
    while True:
        data, addr = sock.recvfrom(2048)
        sock.sendto(addr[0].encode() + b" " + data, addr)
""")

#: sends one datagram to argv[1]:argv[2] from argv[4] and prints the answer (5 s at most)
ECHO_CLIENT = textwrap.dedent("""
    import socket, sys
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((sys.argv[4], 0))
    sock.settimeout(5)
    sock.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
    print(sock.recvfrom(2048)[0].decode(), flush=True)
""")


def listed() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def start_echo(host) -> tuple[subprocess.Popen, int]:
    server = host.popen([sys.executable, "-c", ECHO_SERVER, host.address],
                        stdout=subprocess.PIPE, text=True)
    return server, int(server.stdout.readline())


def test_every_host_reaches_an_echo_server_from_its_own_address():
    with NetnsBed(hosts=8) as bed:
        assert len(set(bed.addresses)) == 8
        assert all(netns.ipaddress.IPv4Address(a) in bed.subnet for a in bed.addresses)
        server, port = start_echo(bed.hosts[0])
        for client in bed.hosts[1:]:
            answer = client.run([sys.executable, "-c", ECHO_CLIENT, bed.hosts[0].address,
                                 str(port), f"hello from {client.index}", client.address],
                                timeout=20).stdout.strip()
            # The server saw the client's own address: each host really is a host.
            assert answer == f"{client.address} hello from {client.index}"
        assert server.poll() is None
    assert server.poll() is not None


def test_hosts_have_loopback_and_only_their_own_interface():
    with NetnsBed(hosts=2) as bed:
        host = bed.hosts[1]
        links = json.loads(host.run(["ip", "-j", "link"]).stdout)
        assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]
        assert all("UP" in link["flags"] for link in links)
        server, port = start_echo(host)
        server_local = host.popen([sys.executable, "-c", ECHO_SERVER, "127.0.0.1"],
                                  stdout=subprocess.PIPE, text=True)
        local_port = int(server_local.stdout.readline())
        answer = host.run([sys.executable, "-c", ECHO_CLIENT, "127.0.0.1", str(local_port),
                           "loop", "127.0.0.1"], timeout=20).stdout.strip()
        assert answer == "127.0.0.1 loop"
        # The other host cannot reach host 1's loopback service, only its address.
        other = bed.hosts[0]
        answer = other.run([sys.executable, "-c", ECHO_CLIENT, host.address, str(port),
                            "bridge", other.address], timeout=20).stdout.strip()
        assert answer == f"{other.address} bridge"


def test_teardown_removes_namespaces_and_processes_even_after_a_failure():
    bed = NetnsBed(hosts=3)
    with pytest.raises(ZeroDivisionError):
        with bed:
            names = bed.namespaces()
            assert len(names) == 4 and set(names) <= listed()
            sleeper = bed.hosts[2].popen([sys.executable, "-c", "import time; time.sleep(600)"])
            # A process the bed did not start is stopped too: it lives in the namespace.
            stray = subprocess.Popen(bed.hosts[1].command(
                [sys.executable, "-c", "import time; time.sleep(600)"]))
            1 / 0
    assert not set(names) & listed()
    assert sleeper.poll() is not None
    assert stray.wait(timeout=5) is not None
    assert bed.namespaces() == []
    bed.close()  # a second close is harmless


def test_a_failed_build_removes_what_it_built_and_says_why(monkeypatch):
    real_ip = netns._ip
    created = []

    def failing_ip(*args, **kwargs):
        if args[:2] == ("netns", "add"):
            created.append(args[2])
        if "addr" in args and args[0] == "-n" and args[1].endswith("-h1"):
            raise RuntimeError("ip addr add failed (2): injected")
        return real_ip(*args, **kwargs)

    monkeypatch.setattr(netns, "_ip", failing_ip)
    bed = NetnsBed(hosts=3)
    with pytest.raises(RuntimeError, match="injected"):
        bed.open()
    assert len(created) == 3  # the switch, host 0 and host 1 had been built
    assert not set(created) & listed()
    assert bed.closed and bed.namespaces() == []


def test_subnets_too_small_are_refused():
    assert NetnsBed(hosts=2, subnet="10.77.0.0/30").subnet.num_addresses == 4
    with pytest.raises(ValueError):
        NetnsBed(hosts=3, subnet="10.77.0.0/30")
    with pytest.raises(ValueError):
        NetnsBed(hosts=0)


def test_a_bed_never_closed_is_removed_at_interpreter_exit(tmp_path):
    script = textwrap.dedent("""
        import json, sys
        from tests.helpers.netns import NetnsBed
        bed = NetnsBed(hosts=2).open()
        bed.hosts[0].popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(json.dumps(bed.namespaces()), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True, cwd=_repo())
    names = json.loads(out.stdout)
    assert len(names) == 3
    assert not set(names) & listed()


def test_leftovers_of_a_killed_run_are_removed_by_the_next_bed():
    script = textwrap.dedent("""
        import json, os
        from tests.helpers.netns import NetnsBed
        bed = NetnsBed(hosts=2).open()
        print(json.dumps(bed.namespaces()), flush=True)
        os._exit(0)  # like SIGKILL: no atexit, no cleanup
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True, cwd=_repo())
    names = json.loads(out.stdout)
    assert set(names) <= listed()
    with NetnsBed(hosts=1) as bed:
        assert not set(names) & listed()
        assert bed.namespaces()[0] in listed()


def test_random_subnets_fit_the_hosts():
    rng = random.Random(1)
    assert NetnsBed(hosts=10, rng=rng).subnet.prefixlen == 24
    big = NetnsBed(hosts=300, rng=rng).subnet
    assert big.prefixlen == 23 and big.subnet_of(netns.ipaddress.IPv4Network("10.0.0.0/8"))


def test_availability_names_the_reason(monkeypatch):
    assert netns_available() == (True, "")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    available, reason = netns_available()
    assert not available and "root" in reason
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    available, reason = netns_available()
    assert not available and "iproute2" in reason


def _repo() -> str:
    import pathlib
    return str(pathlib.Path(__file__).resolve().parents[2])
