"""Fuzz harness for the handshake messages (atheris).

The first input byte picks a target; the rest is either the message itself or a
list of mutations applied to a genuine message (made once, with seeded keys):

* the packet decoders ``parse_initiation_untrusted``,
  ``parse_response_untrusted``, ``parse_cookie_reply_untrusted`` and
  ``TransportParameters.decode_untrusted``;
* ``HandshakeState.read_message`` of a Noise ``IKpsk2`` responder (message 1)
  and initiator (message 2), in both cipher suites, fed arbitrary bytes, mutated
  genuine messages, and messages out of turn;
* a responder ``Endpoint`` fed a mutated genuine INITIATION.

Invariant, for any input:

* the decoders raise only ``DecodeError``, and what they accept splits the packet
  exactly (the fields put back together give the input), and decoded transport
  parameters survive a re-encoding;
* ``read_message`` raises only ``NoiseError``, and a state it failed on is dead;
* a mutated genuine message never authenticates: a Noise message that differs
  from the genuine one in any byte is refused, and a mutated INITIATION never
  gives the endpoint a half-open session or an answer (only ``mac2``, which is
  not checked unless the endpoint is under load, may differ without effect);
* a COOKIE_REPLY whose nonce or sealed cookie was mutated never opens.

Run: ``python fuzz/fuzz_handshake.py [corpus dirs] [libFuzzer flags]``, or ``fuzz/run``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from _harness import A_ADDR, SHARED_SEED, Ops, make_endpoint, seeded_rng
    from stt_proto import handshake as hs
    from stt_proto.errors import DecodeError, NoiseError
    from stt_proto.identity import Identity, derive_psk
    from stt_proto.noise import HandshakeState

PSK = derive_psk(SHARED_SEED)
INITIATOR = Identity.generate(seeded_rng(1))
RESPONDER_SEED = 2
RESPONDER = Identity.generate(seeded_rng(RESPONDER_SEED))  # as make_endpoint(2) makes it


def initiator_state(suite: int) -> HandshakeState:
    """The initiator, always with the same ephemeral key (seeded)."""
    return HandshakeState(hs.SUITES[suite], initiator=True, prologue=hs.PROLOGUE,
                          s=INITIATOR.private_key, rs=RESPONDER.node_id, psks=[PSK],
                          rng=seeded_rng(10 + suite))


def responder_state(suite: int) -> HandshakeState:
    return HandshakeState(hs.SUITES[suite], initiator=False, prologue=hs.PROLOGUE,
                          s=RESPONDER.private_key, psks=[PSK], rng=seeded_rng(20 + suite))


def _genuine(suite: int) -> dict:
    """One complete genuine handshake in ``suite``: its messages and packets."""
    initiator, responder = initiator_state(suite), responder_state(suite)
    params = hs.TransportParameters().encode(pad_to=hs.MIN_INITIATION_SIZE)
    message1 = initiator.write_message(params)
    packet1, mac1 = hs.encode_initiation(suite, 0x01020304, message1, RESPONDER.node_id, None)
    responder.read_message(message1)
    message2 = responder.write_message(hs.TransportParameters().encode())
    packet2 = hs.encode_response(0x0A0B0C0D, 0x01020304, message2, INITIATOR.node_id)
    initiator.read_message(message2)
    cookie_key = hs.cookie_key(RESPONDER.node_id)
    nonce = bytes(range(12))
    cookie = hs.encode_cookie_reply(0x01020304, nonce,
                                    hs.seal_cookie(cookie_key, nonce, bytes(16), mac1))
    return {"message1": message1, "message2": message2, "initiation": packet1,
            "response": packet2, "cookie_reply": cookie, "mac1": mac1}


GENUINE = {suite: _genuine(suite) for suite in hs.SUITES}


def expect_noise_error(state: HandshakeState, message: bytes) -> None:
    """``message`` must be refused with ``NoiseError`` and kill ``state``."""
    try:
        state.read_message(message)
    except NoiseError:
        if not state.dead:
            raise AssertionError("a failed read_message left the state usable") from None
        return
    raise AssertionError(f"read_message accepted a forged message: {message!r}")


def check_decoders(target: int, data: bytes) -> None:
    try:
        if target == 0:
            msg = hs.parse_initiation_untrusted(data)
            rebuilt = msg.body_for_mac2 + msg.mac2
            if msg.body_for_mac1 + msg.mac1 != msg.body_for_mac2:
                raise AssertionError("INITIATION mac1 split is not exact")
        elif target == 1:
            msg = hs.parse_response_untrusted(data)
            rebuilt = msg.body_for_mac2 + msg.mac2
            if msg.body_for_mac1 + msg.mac1 != msg.body_for_mac2:
                raise AssertionError("RESPONSE mac1 split is not exact")
        elif target == 2:
            msg = hs.parse_cookie_reply_untrusted(data)
            rebuilt = hs.encode_cookie_reply(msg.receiver_index, msg.nonce, msg.sealed_cookie)
        else:
            params = hs.TransportParameters.decode_untrusted(data)
            again = hs.TransportParameters.decode_untrusted(params.encode())
            if again != params:
                raise AssertionError(f"parameters change on re-encoding: {params!r} {again!r}")
            return
    except DecodeError:
        return
    if rebuilt != data:
        raise AssertionError("the decoded fields do not give back the packet")


def check_mutated_initiation(suite: int, ops: Ops) -> None:
    genuine = GENUINE[suite]
    packet = ops.mutate(genuine["initiation"], insert=16, overwrite=4)
    if packet == genuine["initiation"]:
        return
    try:
        msg = hs.parse_initiation_untrusted(packet)
    except DecodeError:
        msg = None
    if msg is not None and msg.noise != genuine["message1"]:
        expect_noise_error(responder_state(suite), msg.noise)
    # The endpoint: with mac1 and the Noise message intact it may accept (the
    # change is in mac2 alone); otherwise nothing at all happens.
    responder = make_endpoint(RESPONDER_SEED)
    if responder.node_id != RESPONDER.node_id:
        raise AssertionError("harness keys out of step")
    responder.receive_datagram(packet, A_ADDR, 0.0)
    out = responder.datagrams_to_send(0.0)
    stats = responder.statistics()
    only_mac2 = (len(packet) == len(genuine["initiation"])
                 and packet[:-hs.MAC_SIZE] == genuine["initiation"][:-hs.MAC_SIZE])
    if not only_mac2 and (out or stats["half_open"] or stats["sessions"]):
        raise AssertionError(f"a mutated INITIATION was answered: {packet!r}")


def check_mutated_response(suite: int, ops: Ops) -> None:
    genuine = GENUINE[suite]
    message = ops.mutate(genuine["message2"], insert=16, overwrite=4)
    if message != genuine["message2"]:
        state = initiator_state(suite)
        state.write_message(hs.TransportParameters().encode(pad_to=hs.MIN_INITIATION_SIZE))
        expect_noise_error(state, message)
    packet = ops.mutate(genuine["response"], insert=16, overwrite=4)
    check_decoders(1, packet)


def check_mutated_cookie(suite: int, ops: Ops) -> None:
    genuine = GENUINE[suite]
    packet = ops.mutate(genuine["cookie_reply"], insert=16, overwrite=4)
    try:
        msg = hs.parse_cookie_reply_untrusted(packet)
    except DecodeError:
        return
    opened = hs.open_cookie(hs.cookie_key(RESPONDER.node_id), msg.nonce, msg.sealed_cookie,
                            genuine["mac1"])
    # The receiver index only routes the reply (to the attempt whose mac1 is
    # the associated data); the nonce and the sealed cookie are authenticated.
    if packet[5:] != genuine["cookie_reply"][5:] and opened is not None:
        raise AssertionError(f"a mutated COOKIE_REPLY opened: {packet!r}")


def check_out_of_turn(suite: int, ops: Ops) -> None:
    """After the genuine message 1, the responder must write; reading again
    (whatever the bytes) is refused, as is anything after completion."""
    genuine = GENUINE[suite]
    state = responder_state(suite)
    state.read_message(genuine["message1"])
    if ops.byte() & 1:
        state.write_message(b"")
        if not state.complete:
            raise AssertionError("IK completes after two messages")
        try:
            state.read_message(ops.take(200))
        except NoiseError:
            return
        raise AssertionError("read_message after completion did not fail")
    expect_noise_error(state, ops.take(200))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    target = data[0] % 11
    suite = 1 + (data[0] >> 7)
    rest = data[1:]
    ops = Ops(rest)
    if target <= 3:
        check_decoders(target, rest)
    elif target == 4:
        check_mutated_initiation(suite, ops)
    elif target == 5:
        check_mutated_response(suite, ops)
    elif target == 6:
        expect_noise_error(responder_state(suite), rest)
    elif target == 7:
        state = initiator_state(suite)
        state.write_message(b"")
        expect_noise_error(state, rest)
    elif target == 8:
        check_mutated_cookie(suite, ops)
    elif target == 9:
        check_out_of_turn(suite, ops)
    else:
        # Arbitrary bytes, as an INITIATION with a valid mac1, to an endpoint.
        responder = make_endpoint(RESPONDER_SEED)
        noise = rest.ljust(hs.MIN_INITIATION_SIZE, b"\0")[:1100]
        packet, _ = hs.encode_initiation(suite, 7, noise, RESPONDER.node_id, None)
        responder.receive_datagram(packet, A_ADDR, 0.0)
        if responder.datagrams_to_send(0.0) or responder.statistics()["half_open"]:
            raise AssertionError("forged INITIATION answered")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
