"""A host whose address changes in the middle of a transfer keeps its session:
two network namespaces on a bridge, a sender in one, a receiver in the other,
and halfway through, the sender's host gets a new address and loses the old
one (what a laptop that moves to another network sees; its process is not
told). The receiver validates the new address and follows (``docs/protocol.md``
7.11); every byte arrives. Both adapters, each as sender once.

Root only (network namespaces); skipped with the reason otherwise.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.netns import NetnsBed, netns_available

_available, _reason = netns_available()
pytestmark = pytest.mark.skipif(not _available, reason=_reason)

PEER = str(Path(__file__).resolve().parents[1] / "helpers" / "roaming_peer.py")
ROOT = str(Path(__file__).resolve().parents[2])
CHUNKS = 300
INTERVAL = 0.01      # about 6 MB/s for 3 s
LIMIT = 60.0


def start(host, *argv: str) -> subprocess.Popen:
    return host.popen([sys.executable, PEER, *argv], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True, cwd=ROOT,
                      env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"})


def read_line(proc: subprocess.Popen, prefix: str) -> str:
    while True:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"no {prefix!r} line: {proc.stderr.read()}")
        if line.startswith(prefix):
            return line.strip()


@pytest.mark.parametrize(("sender", "receiver"), [("asyncio", "trio"), ("trio", "asyncio")])
def test_a_host_whose_address_changes_keeps_its_session(sender, receiver):
    with NetnsBed(hosts=2) as bed:
        here, there = bed.hosts
        new = str(ipaddress.IPv4Address(there.address) + 100)
        assert ipaddress.IPv4Address(new) in bed.subnet
        server = start(here, "receiver", receiver)
        client = None
        try:
            _, address, node_id = read_line(server, "ready ").split()
            port = address.rsplit(":", 1)[1]
            client = start(there, "sender", sender, f"{here.address}:{port}", node_id,
                           str(CHUNKS), str(INTERVAL))
            read_line(client, f"sent {CHUNKS // 3}")
            prefix = bed.subnet.prefixlen
            # Without this, deleting the first address of the subnet deletes
            # the second one with it.
            there.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/"
                       f"{there.interface}/promote_secondaries"])
            there.run(["ip", "addr", "add", f"{new}/{prefix}", "dev", there.interface])
            there.run(["ip", "addr", "del", f"{there.address}/{prefix}", "dev", there.interface])
            _, sent, sent_hash = read_line(client, "done ").split()
            _, got, got_hash, peer_host = read_line(server, "got ").split()
            assert (got, got_hash) == (sent, sent_hash) and int(got) == CHUNKS * 64 * 1024
            paths = read_line(server, "paths ")
            assert peer_host == new, paths
            assert server.wait(LIMIT) == 0 and client.wait(LIMIT) == 0
        finally:
            for proc in (server, client):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc is not None:
                    proc.stdout.close()
                    proc.stderr.close()
