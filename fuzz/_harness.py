"""Shared pieces of the engine fuzz harnesses (``fuzz_endpoint``, ``fuzz_session``,
``fuzz_handshake``) and of ``tests/engine/test_fuzz_regressions.py``.

Nothing here imports atheris, so the regression tests replay findings through the
very same checks without it. Everything is deterministic: keys and ``rng`` come
from seeded PRNGs (fine for a fuzzer, never for a deployment), and time is
simulated, so one input always takes the same path.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from stt_proto.config import EndpointConfig
from stt_proto.constants import ErrorCode, PacketKind
from stt_proto.endpoint import Endpoint
from stt_proto.handshake import (
    MIN_INITIATION_SIZE,
    PROLOGUE,
    SUITES,
    TransportParameters,
    encode_initiation,
    parse_response_untrusted,
)
from stt_proto.handshaking import MAX_ATTEMPTS_PER_CONNECT
from stt_proto.identity import Identity, derive_psk
from stt_proto.noise import CipherState, HandshakeState

SHARED_SEED = b"network seed of the fuzz harnesses"
A_ADDR = ("10.0.0.1", 4000)
B_ADDR = ("10.0.0.2", 4000)
#: Sources of unauthenticated traffic: strangers, and A's host on another port.
ATTACKERS = (("10.6.6.6", 666), ("10.6.6.7", 667), ("10.0.0.1", 4001))
SOURCES = (A_ADDR, *ATTACKERS)

#: Codes a session closed by the engine itself for a peer's violation may carry.
PROTOCOL_ERROR_CODES = frozenset(int(code) for code in ErrorCode) - {0}

_DATA_HEADER = struct.Struct(">BIQ")


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    """A deterministic ``rng`` (the fuzzer must replay every input exactly)."""
    r = random.Random(seed)
    return r.randbytes


def make_endpoint(seed: int, **overrides) -> Endpoint:
    rng = seeded_rng(seed)
    config = EndpointConfig(identity=Identity.generate(rng), shared_seed=SHARED_SEED, rng=rng,
                            **overrides)
    return Endpoint(config)


class Ops:
    """Reads a fuzzer input as a sequence of small operations. Running out of
    bytes yields zeros, so every input is a valid program."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def more(self) -> bool:
        return self._pos < len(self._data)

    def byte(self) -> int:
        if self._pos >= len(self._data):
            return 0
        self._pos += 1
        return self._data[self._pos - 1]

    def take(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def u16(self) -> int:
        return int.from_bytes(self.take(2).ljust(2, b"\0"), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8).ljust(8, b"\0"), "big")

    def blob(self) -> bytes:
        """A length-prefixed byte string (two bytes of length)."""
        return self.take(self.u16())

    def mutate(self, original: bytes, *, insert: int, overwrite: int) -> bytes:
        """``original`` with one to four edits: a flipped byte, a cut, up to
        ``insert`` bytes inserted, or ``overwrite`` bytes overwritten."""
        data = bytearray(original)
        for _ in range(1 + self.byte() % 4):
            how = self.byte() % 4
            pos = self.u16() % (len(data) + 1)
            if how == 0 and data:
                data[pos % len(data)] ^= self.byte() or 1
            elif how == 1:
                del data[pos:]
            elif how == 2:
                data[pos:pos] = self.take(self.byte() % (insert + 1))
            else:
                data[pos : pos + overwrite] = self.take(overwrite)
        return bytes(data)


def pack_blob(data: bytes) -> bytes:
    """The encoding :meth:`Ops.blob` reads (for writing seeds)."""
    return len(data).to_bytes(2, "big") + data


def data_header(receiver_index: int, pn: int) -> bytes:
    return _DATA_HEADER.pack(int(PacketKind.DATA), receiver_index, pn)


def check_tables(endpoint: Endpoint) -> dict:
    """Every table of the endpoint is within its configured limit. Returns the
    statistics."""
    config = endpoint._config
    stats = endpoint.statistics()
    limits = {
        "sessions": config.max_sessions,
        "half_open": config.max_half_open,
        "pending_connects": config.max_pending_connects,
        "replay_cache": config.replay_cache_size,
        "queued_events": config.max_events,
    }
    for name, limit in limits.items():
        if not 0 <= stats[name] <= limit:
            raise AssertionError(f"{name} = {stats[name]} outside 0..{limit}")
    # Three keys per session (previous, current, next), and the attempts of
    # its rekey or of a pending connect.
    most = ((stats["sessions"] * (3 + MAX_ATTEMPTS_PER_CONNECT))
            + stats["pending_connects"] * MAX_ATTEMPTS_PER_CONNECT)
    if stats["indices"] > most:
        raise AssertionError(f"{stats['indices']} indices for {stats['sessions']} sessions")
    if stats["handshake_bytes_sent_unvalidated"] > stats["handshake_bytes_received_unvalidated"]:
        raise AssertionError("sent more handshake bytes to unvalidated addresses than received")
    return stats


class ManualInitiator:
    """The initiator side of one session, played by the harness with the public
    handshake API, so that it holds the session's real sending keys and can seal
    any payload under any packet number."""

    def __init__(self, responder: Endpoint, seed: int = 99, suite: int = 0x01) -> None:
        rng = seeded_rng(seed)
        self.identity = Identity.generate(rng)
        self.index = int.from_bytes(rng(4), "big")
        self.responder = responder
        self._handshake = HandshakeState(
            SUITES[suite], initiator=True, prologue=PROLOGUE, s=self.identity.private_key,
            rs=responder.node_id, psks=[derive_psk(SHARED_SEED)], rng=rng)
        params = TransportParameters().encode(pad_to=MIN_INITIATION_SIZE)
        noise = self._handshake.write_message(params)
        self.initiation, _ = encode_initiation(suite, self.index, noise, responder.node_id, None)
        self.send: CipherState | None = None
        self.recv: CipherState | None = None
        self.remote_index = 0

    def complete(self, response: bytes) -> None:
        """Read the responder's RESPONSE and keep the transport keys."""
        msg = parse_response_untrusted(response)
        TransportParameters.decode_untrusted(self._handshake.read_message(msg.noise))
        self.send, self.recv = self._handshake.split()
        self.remote_index = msg.sender_index

    def seal(self, pn: int, payload: bytes) -> bytes:
        """A DATA packet carrying ``payload`` under packet number ``pn``."""
        header = data_header(self.remote_index, pn)
        return header + self.send.encrypt_with_nonce(pn, header, payload)
