"""Identities, the network PSK, node id parsing, and key files.

Everything here is in memory except the key-file tests, which use pytest's
``tmp_path``. No sockets, no clocks.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import os
import pickle
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stt_io.keys import (
    IDENTITY_HEADER,
    MAX_KEY_FILE_BYTES,
    InsecureKeyFileError,
    load_identity,
    load_seed,
    save_identity,
)
from stt_proto.errors import STTError
from stt_proto.identity import (
    MIN_SEED_BYTES,
    PSK_LABEL,
    Identity,
    derive_psk,
    parse_node_id,
    validate_seed,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")

PRIVATE = bytes(range(1, 33))
SEED = b"correct horse battery staple"


def counting_rng(start: int = 0):
    """A deterministic rng: consecutive byte values from ``start``."""
    counter = itertools.count(start)

    def rng(n: int) -> bytes:
        return bytes(next(counter) % 256 for _ in range(n))

    return rng


def secret_forms(identity: Identity) -> list[str]:
    """Every way the private key could show up in text."""
    raw = identity.private_bytes()
    return [raw.hex(), raw.hex().upper(), repr(raw), str(raw)]


def assert_no_secret(text: str, identity: Identity) -> None:
    for form in secret_forms(identity):
        assert form not in text


def public_of(private: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------


def test_generate_and_round_trip():
    identity = Identity.generate()
    raw = identity.private_bytes()
    assert isinstance(raw, bytes) and len(raw) == 32
    again = Identity.from_private_bytes(raw)
    assert again == identity
    assert again.private_bytes() == raw
    assert Identity.generate() != identity


def test_node_id_is_the_x25519_public_key():
    identity = Identity.from_private_bytes(PRIVATE)
    assert identity.node_id == public_of(PRIVATE)
    assert len(identity.node_id) == 32
    assert identity.node_id_hex == identity.node_id.hex()
    assert isinstance(identity.private_key, X25519PrivateKey)
    assert identity.private_key.private_bytes_raw() == PRIVATE


def test_wraps_an_existing_private_key():
    key = X25519PrivateKey.from_private_bytes(PRIVATE)
    assert Identity(key) == Identity.from_private_bytes(PRIVATE)
    with pytest.raises(TypeError):
        Identity(PRIVATE)  # type: ignore[arg-type]


def test_deterministic_rng_gives_deterministic_identity():
    a = Identity.generate(counting_rng(7))
    b = Identity.generate(counting_rng(7))
    c = Identity.generate(counting_rng(8))
    assert a == b and a.private_bytes() == b.private_bytes()
    assert a != c
    assert a.signing_seed_bytes() == bytes(range(7, 39))


def test_generate_rejects_a_bad_rng():
    with pytest.raises(ValueError, match="32 bytes"):
        Identity.generate(lambda n: b"\x01" * (n - 1))
    with pytest.raises(ValueError):
        Identity.generate(lambda n: "x" * n)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("raw", [b"", b"\x01" * 31, b"\x01" * 33, b"\x01" * 64],
                         ids=lambda raw: f"{len(raw)}-bytes")
def test_from_private_bytes_rejects_wrong_length_without_echo(raw):
    with pytest.raises(ValueError) as info:
        Identity.from_private_bytes(raw)
    message = str(info.value)
    assert "32 bytes" in message
    if raw:
        assert raw.hex() not in message and repr(raw) not in message


def test_from_private_bytes_rejects_text():
    with pytest.raises(TypeError):
        Identity.from_private_bytes(PRIVATE.hex())  # type: ignore[arg-type]


def test_from_private_bytes_accepts_bytes_like():
    expected = Identity.from_private_bytes(PRIVATE)
    assert Identity.from_private_bytes(bytearray(PRIVATE)) == expected
    assert Identity.from_private_bytes(memoryview(PRIVATE)) == expected


def test_display_shows_only_a_public_prefix():
    identity = Identity.from_private_bytes(PRIVATE)
    prefix = identity.node_id_hex[:16]
    expected = f"Identity(node_id={prefix}\u2026)"
    assert repr(identity) == expected
    assert str(identity) == expected
    assert f"{identity}" == expected
    assert f"{identity!r}" == expected
    assert format(identity, ">60") == expected.rjust(60)
    assert "%s %r" % (identity, identity) == f"{expected} {expected}"
    assert identity.node_id_hex not in repr(identity)  # only a prefix
    texts = [
        repr(identity), str(identity), f"{identity}", f"{identity:>80}",
        repr([identity]), repr({identity: 1}), repr((identity,)),
    ]
    for text in texts:
        assert_no_secret(text, identity)


def test_no_dict_and_immutable():
    identity = Identity.from_private_bytes(PRIVATE)
    assert not hasattr(identity, "__dict__")
    with pytest.raises(TypeError):
        vars(identity)
    with pytest.raises(AttributeError):
        identity.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        identity._node_id = b"\x00" * 32  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del identity._private_key


def test_equality_and_hash_by_node_id():
    a = Identity.from_private_bytes(PRIVATE)
    b = Identity.from_private_bytes(bytes(PRIVATE))
    other = Identity.generate(counting_rng(100))
    assert a == b and hash(a) == hash(b)
    assert a != other
    assert len({a, b, other}) == 2
    assert a != a.node_id  # an identity is not its id
    assert hash(a) == hash(a.node_id)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_refused(protocol):
    identity = Identity.from_private_bytes(PRIVATE)
    with pytest.raises(TypeError, match="not picklable") as info:
        pickle.dumps(identity, protocol=protocol)
    assert_no_secret(str(info.value), identity)
    with pytest.raises(TypeError, match="not picklable"):
        identity.__getstate__()
    with pytest.raises(TypeError, match="not picklable"):
        identity.__reduce__()


def test_copy_returns_the_same_immutable_object():
    identity = Identity.from_private_bytes(PRIVATE)
    assert copy.copy(identity) is identity
    assert copy.deepcopy({"id": identity})["id"] is identity


def test_exception_messages_never_contain_the_key():
    identity = Identity.from_private_bytes(PRIVATE)
    messages = []
    for bad in (PRIVATE[:31], PRIVATE + b"\x00"):
        with pytest.raises(ValueError) as info:
            Identity.from_private_bytes(bad)
        messages.append(str(info.value))
    with pytest.raises(TypeError) as type_info:
        Identity.from_private_bytes(PRIVATE.hex())  # type: ignore[arg-type]
    messages.append(str(type_info.value))
    for message in messages:
        assert_no_secret(message, identity)
        assert PRIVATE[:31].hex() not in message


# ---------------------------------------------------------------------------
# derive_psk
# ---------------------------------------------------------------------------


def test_derive_psk_is_hmac_blake2s_of_the_label():
    psk = derive_psk(SEED)
    assert isinstance(psk, bytes) and len(psk) == 32
    assert psk == derive_psk(SEED)
    assert psk == hmac.digest(SEED, PSK_LABEL + len(SEED).to_bytes(8, "big"), "blake2s")
    assert PSK_LABEL == b"STT v1 network pre-shared key"
    assert psk != SEED[:32]


def test_derive_psk_differs_for_different_seeds():
    seeds = [SEED, SEED + b"!", b"!" + SEED, b"\x00" * 16, b"\x01" * 16, b"\x01" * 17, b"x" * 100]
    psks = {derive_psk(seed) for seed in seeds}
    assert len(psks) == len(seeds)


def test_derive_psk_separates_hmac_key_equivalences():
    # HMAC zero-pads short keys and hashes long ones; the seed length in the
    # message keeps such *different* seeds from giving the same PSK.
    assert derive_psk(b"\x07" * 16) != derive_psk(b"\x07" * 16 + b"\x00")
    long_seed = b"y" * 100
    assert derive_psk(long_seed) != derive_psk(hashlib.blake2s(long_seed).digest())


def test_derive_psk_accepts_bytes_like():
    assert derive_psk(bytearray(SEED)) == derive_psk(memoryview(SEED)) == derive_psk(SEED)


def test_derive_psk_rejects_short_seed_without_echo():
    seed = b"fifteen-byte-sd"
    assert len(seed) == 15 == MIN_SEED_BYTES - 1
    with pytest.raises(ValueError) as info:
        derive_psk(seed)
    message = str(info.value)
    assert message == "shared_seed must be at least 16 bytes (got 15)"
    assert seed.decode() not in message and seed.hex() not in message and repr(seed) not in message
    with pytest.raises(ValueError, match=r"got 0"):
        derive_psk(b"")


def test_derive_psk_minimum_and_long_seeds():
    assert len(derive_psk(b"s" * MIN_SEED_BYTES)) == 32
    long_seed = bytes(range(256)) * 3 + b"x" * 232
    assert len(long_seed) == 1000
    psk = derive_psk(long_seed)
    assert len(psk) == 32
    assert psk == hmac.digest(long_seed, PSK_LABEL + (1000).to_bytes(8, "big"), "blake2s")


@pytest.mark.parametrize("seed", ["a text seed of some length", 12345678901234567890, None])
def test_derive_psk_rejects_non_bytes(seed):
    with pytest.raises(TypeError) as info:
        derive_psk(seed)  # type: ignore[arg-type]
    if isinstance(seed, str):
        assert seed not in str(info.value)


def test_validate_seed_returns_bytes():
    assert validate_seed(bytearray(SEED)) == SEED
    assert type(validate_seed(memoryview(SEED))) is bytes


# ---------------------------------------------------------------------------
# parse_node_id
# ---------------------------------------------------------------------------

NODE_ID = public_of(PRIVATE)


@pytest.mark.parametrize(
    "value",
    [
        NODE_ID,
        bytearray(NODE_ID),
        memoryview(NODE_ID),
        NODE_ID.hex(),
        NODE_ID.hex().upper(),
        f"  {NODE_ID.hex()}\n",
        f"\t{NODE_ID.hex()[:10].upper()}{NODE_ID.hex()[10:]} ",
    ],
    ids=["raw", "bytearray", "memoryview", "hex", "HEX", "hex-padded", "mixed-case-padded"],
)
def test_parse_node_id_accepts(value):
    result = parse_node_id(value)
    assert result == NODE_ID and type(result) is bytes


@pytest.mark.parametrize(
    "value",
    [
        NODE_ID[:31],
        NODE_ID + b"\x00",
        b"",
        NODE_ID.hex().encode(),  # hex must be given as str
        NODE_ID.hex()[:63],
        NODE_ID.hex() + "0",
        "",
        "0x" + NODE_ID.hex()[2:],
        NODE_ID.hex()[:62] + "zz",
        NODE_ID.hex()[:30] + " " + NODE_ID.hex()[31:],  # inner whitespace
        NODE_ID.hex()[:32] + ":" + NODE_ID.hex()[33:],
        "\u0660" * 64,  # non-ASCII digits
    ],
    ids=["31-bytes", "33-bytes", "empty-bytes", "hex-as-bytes", "63-hex", "65-hex", "empty-str",
         "0x-prefix", "not-hex", "inner-space", "colon", "arabic-digits"],
)
def test_parse_node_id_rejects(value):
    with pytest.raises(ValueError, match="node id"):
        parse_node_id(value)


@pytest.mark.parametrize("value", [None, 5, 1.5, [1, 2]])
def test_parse_node_id_rejects_other_types(value):
    with pytest.raises(TypeError):
        parse_node_id(value)  # type: ignore[arg-type]


def test_parse_node_id_round_trips_identity():
    identity = Identity.generate(counting_rng(3))
    assert parse_node_id(identity.node_id_hex) == identity.node_id
    assert parse_node_id(identity.node_id) == identity.node_id


# ---------------------------------------------------------------------------
# Key files: identities
# ---------------------------------------------------------------------------


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_save_load_round_trip(tmp_path):
    identity = Identity.generate(counting_rng(42))
    path = tmp_path / "node.key"
    save_identity(identity, path)
    if os.name == "posix":
        assert mode_of(path) == 0o600
    loaded = load_identity(path)
    assert loaded == identity
    assert loaded.private_bytes() == identity.private_bytes()
    # str paths work as well as pathlib ones
    assert load_identity(str(path)) == identity


def test_file_format(tmp_path):
    identity = Identity.from_private_bytes(PRIVATE)
    path = tmp_path / "node.key"
    save_identity(identity, path)
    assert path.read_bytes() == (
        f"{IDENTITY_HEADER}\n{PRIVATE.hex()}\nnode_id {identity.node_id_hex}\n".encode()
    )
    assert IDENTITY_HEADER == "STT-IDENTITY-V1"


@posix_only
def test_save_is_0600_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        save_identity(Identity.generate(), tmp_path / "node.key")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "node.key") == 0o600


def test_save_refuses_to_overwrite(tmp_path):
    path = tmp_path / "node.key"
    first = Identity.generate(counting_rng(1))
    save_identity(first, path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_identity(Identity.generate(counting_rng(2)), path)
    assert path.read_bytes() == before
    assert load_identity(path) == first


@posix_only
def test_overwrite_replaces_and_leaves_0600(tmp_path):
    path = tmp_path / "node.key"
    path.write_text("something longer than an identity file would be\n" * 10)
    os.chmod(path, 0o644)
    second = Identity.generate(counting_rng(2))
    save_identity(second, path, overwrite=True)
    assert mode_of(path) == 0o600
    assert load_identity(path) == second
    # overwrite=True on a missing file simply creates it
    fresh = tmp_path / "fresh.key"
    save_identity(second, fresh, overwrite=True)
    assert mode_of(fresh) == 0o600 and load_identity(fresh) == second


def test_overwrite_refuses_a_directory(tmp_path):
    target = tmp_path / "dir"
    target.mkdir()
    with pytest.raises(FileExistsError, match="not a regular file"):
        save_identity(Identity.generate(), target, overwrite=True)
    assert target.is_dir()


@posix_only
def test_save_never_follows_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "node.key"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        save_identity(Identity.generate(), link)
    with pytest.raises(FileExistsError, match="not a regular file"):
        save_identity(Identity.generate(), link, overwrite=True)
    assert victim.read_text() == "precious\n"


def test_save_rejects_non_identity(tmp_path):
    with pytest.raises(TypeError):
        save_identity(PRIVATE, tmp_path / "node.key")  # type: ignore[arg-type]
    assert not (tmp_path / "node.key").exists()


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o001, 0o610], ids=oct)
def test_load_refuses_group_or_other_access(tmp_path, mode):
    identity = Identity.generate()
    path = tmp_path / "node.key"
    save_identity(identity, path)
    os.chmod(path, mode)
    with pytest.raises(InsecureKeyFileError) as info:
        load_identity(path)
    error = info.value
    message = str(error)
    assert "chmod 600" in message
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert error.path == str(path) and error.mode == mode
    assert isinstance(error, PermissionError) and isinstance(error, STTError)
    assert_no_secret(message, identity)


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700], ids=oct)
def test_load_accepts_owner_only_modes(tmp_path, mode):
    identity = Identity.generate()
    path = tmp_path / "node.key"
    save_identity(identity, path)
    os.chmod(path, mode)
    assert load_identity(path) == identity


@posix_only
def test_insecure_message_quotes_odd_paths(tmp_path):
    path = tmp_path / "my node.key"
    save_identity(Identity.generate(), path)
    os.chmod(path, 0o644)
    with pytest.raises(InsecureKeyFileError) as info:
        load_identity(path)
    assert f"chmod 600 '{path}'" in str(info.value)


def write_private(path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


GOOD_HEX = PRIVATE.hex()
GOOD_ID = public_of(PRIVATE).hex()


H = b"STT-IDENTITY-V1\n"


@pytest.mark.parametrize(
    ("content", "where"),
    [
        pytest.param(b"", "line 1", id="empty"),
        pytest.param(b"STT-IDENTITY-V2\n" + GOOD_HEX.encode() + b"\n", "line 1",
                     id="wrong-version"),
        pytest.param(GOOD_HEX.encode() + b"\n", "line 1", id="no-header"),
        pytest.param(H, "line 2", id="no-key"),
        pytest.param(H + GOOD_HEX[:-1].encode() + b"\n", "line 2", id="key-63-chars"),
        pytest.param(H + GOOD_HEX.encode() + b"00\n", "line 2", id="key-66-chars"),
        pytest.param(H + GOOD_HEX[:-2].encode() + b"zz\n", "line 2", id="key-not-hex"),
        pytest.param(H + GOOD_HEX[:30].encode() + b" " + GOOD_HEX[31:].encode() + b"\n", "line 2",
                     id="key-inner-space"),
        pytest.param(H + GOOD_HEX.encode() + b"\nnode-id " + GOOD_ID.encode() + b"\n", "line 3",
                     id="bad-node-id-label"),
        pytest.param(H + GOOD_HEX.encode() + b"\nnode_id " + GOOD_ID[:-2].encode() + b"\n",
                     "line 3", id="short-node-id"),
        pytest.param(H + GOOD_HEX.encode() + b"\nnode_id " + b"00" * 32 + b"\n", "line 3",
                     id="node-id-mismatch"),
        pytest.param(H + GOOD_HEX.encode() + b"\nnode_id " + GOOD_ID.encode() + b"\nmore\n",
                     "line 4", id="trailing-content"),
        pytest.param(H + b"\xaa" * 32 + b"\n", "ASCII", id="raw-binary-key"),
        pytest.param(b"\xff\xfe" + GOOD_HEX.encode(), "ASCII", id="utf16-bom"),
    ],
)
def test_malformed_identity_files(tmp_path, content, where):
    path = tmp_path / "node.key"
    write_private(path, content)
    with pytest.raises(ValueError) as info:
        load_identity(path)
    message = str(info.value)
    assert str(path) in message
    assert where in message
    for secret in (GOOD_HEX, GOOD_HEX[:-1], GOOD_HEX[:30], GOOD_HEX[:16], repr(PRIVATE)):
        assert secret not in message
    # The original exception (which might quote the bytes) is not chained.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_load_tolerates_crlf_trailing_blank_lines_and_missing_node_id(tmp_path):
    path = tmp_path / "node.key"
    expected = Identity.from_private_bytes(PRIVATE)
    crlf = f"STT-IDENTITY-V1\r\n{GOOD_HEX.upper()}\r\nnode_id {GOOD_ID}\r\n\r\n"
    write_private(path, crlf.encode())
    assert load_identity(path) == expected
    write_private(path, f"STT-IDENTITY-V1\n{GOOD_HEX}".encode())
    assert load_identity(path) == expected


def test_load_refuses_huge_and_non_regular_files(tmp_path):
    path = tmp_path / "big"
    write_private(path, b"STT-IDENTITY-V1\n" + b"0" * MAX_KEY_FILE_BYTES)
    with pytest.raises(ValueError, match="larger than"):
        load_identity(path)
    directory = tmp_path / "dir"
    directory.mkdir()
    with pytest.raises((ValueError, IsADirectoryError, PermissionError)):
        load_identity(directory)


@posix_only
def test_load_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ValueError, match="not a regular file"):
        load_identity(fifo)
    with pytest.raises(FileExistsError, match="not a regular file"):
        save_identity(Identity.generate(), fifo, overwrite=True)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_identity(tmp_path / "absent.key")


# ---------------------------------------------------------------------------
# Key files: seeds
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "seed"),
    [
        (SEED, SEED),
        (SEED + b"\n", SEED),
        (SEED + b"\r\n", SEED),
        (SEED + b"\n\n", SEED + b"\n"),  # only one newline is removed
        (b"\n" + SEED, b"\n" + SEED),
        (bytes(range(256)), bytes(range(256))),
        (b"x" * 1000 + b"\n", b"x" * 1000),
    ],
    ids=["plain", "newline", "crlf", "two-newlines", "leading-newline", "binary", "1000-bytes"],
)
def test_load_seed_round_trip(tmp_path, content, seed):
    path = tmp_path / "seed"
    write_private(path, content)
    assert load_seed(path) == seed
    assert derive_psk(load_seed(str(path))) == derive_psk(seed)


def test_load_seed_too_short(tmp_path):
    path = tmp_path / "seed"
    short = b"short-seed-123"
    write_private(path, short + b"\n")
    with pytest.raises(ValueError) as info:
        load_seed(path)
    message = str(info.value)
    assert str(path) in message and "at least 16 bytes (got 14)" in message
    assert short.decode() not in message


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640], ids=oct)
def test_load_seed_permission_check(tmp_path, mode):
    path = tmp_path / "seed"
    write_private(path, SEED + b"\n")
    os.chmod(path, mode)
    with pytest.raises(InsecureKeyFileError) as info:
        load_seed(path)
    message = str(info.value)
    assert "chmod 600" in message and str(path) in message
    assert SEED.decode() not in message


@pytest.mark.skipif(os.name == "posix", reason="Windows skips the POSIX mode check")
def test_mode_check_skipped_off_posix(tmp_path):  # pragma: no cover - Windows only
    path = tmp_path / "seed"
    path.write_bytes(SEED)
    assert load_seed(path) == SEED

