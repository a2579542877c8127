"""Identity files of signing identities (``STT-IDENTITY-V2``) beside the legacy
format (``STT-IDENTITY-V1``), through ``stt_io.keys`` and the ``stt`` command.

The key-file tests use pytest's ``tmp_path``; the command runs as a real process.
"""

from __future__ import annotations

import os

import pytest

from stt_io.keys import (
    IDENTITY_HEADER,
    SIGNING_IDENTITY_HEADER,
    load_identity,
    save_identity,
)
from stt_proto.errors import MissingSigningKeyError
from stt_proto.identity import Identity, verify_signature

from ..helpers.cli import run

SEED = bytes(range(200, 232))
SEED_HEX = SEED.hex()
SIGNER = Identity.from_signing_seed(SEED)
LEGACY_KEY = bytes(range(1, 33))
LEGACY = Identity.from_private_bytes(LEGACY_KEY)
MESSAGE = b"STT key file test v1\x00payload"


def write_private(path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def test_headers():
    assert IDENTITY_HEADER == "STT-IDENTITY-V1"
    assert SIGNING_IDENTITY_HEADER == "STT-IDENTITY-V2"


def test_signing_identity_file_format_and_round_trip(tmp_path):
    path = tmp_path / "node.key"
    save_identity(SIGNER, path)
    assert path.read_bytes() == (
        f"STT-IDENTITY-V2\nsigning_seed {SEED_HEX}\nnode_id {SIGNER.node_id_hex}\n".encode()
    )
    loaded = load_identity(path)
    assert loaded == SIGNER and loaded.can_sign
    assert loaded.signing_seed_bytes() == SEED
    assert loaded.signing_public_key == SIGNER.signing_public_key
    signature = loaded.sign(MESSAGE)
    assert verify_signature(SIGNER.node_id, SIGNER.signing_public_key, MESSAGE, signature)


def test_generated_identities_are_saved_as_signing_identities(tmp_path):
    identity = Identity.generate()
    save_identity(identity, tmp_path / "node.key")
    assert (tmp_path / "node.key").read_text().startswith("STT-IDENTITY-V2\nsigning_seed ")
    assert load_identity(tmp_path / "node.key").signing_seed_bytes() == (
        identity.signing_seed_bytes()
    )


def test_legacy_identity_is_saved_and_loaded_in_the_old_format(tmp_path):
    path = tmp_path / "old.key"
    save_identity(LEGACY, path)
    assert path.read_bytes() == (
        f"STT-IDENTITY-V1\n{LEGACY_KEY.hex()}\nnode_id {LEGACY.node_id_hex}\n".encode()
    )
    loaded = load_identity(path)
    assert loaded == LEGACY and not loaded.can_sign
    with pytest.raises(MissingSigningKeyError, match="stt keygen"):
        loaded.sign(MESSAGE)


def test_an_old_file_written_by_hand_still_loads(tmp_path):
    # As files from before signing identities look, including the tolerated
    # variations: CRLF, upper-case hex, no node_id line.
    path = tmp_path / "old.key"
    write_private(path, f"STT-IDENTITY-V1\r\n{LEGACY_KEY.hex().upper()}\r\n\r\n".encode())
    assert load_identity(path) == LEGACY


def test_v2_tolerates_crlf_upper_case_and_a_missing_node_id(tmp_path):
    path = tmp_path / "node.key"
    write_private(path, (f"STT-IDENTITY-V2\r\nsigning_seed {SEED_HEX.upper()}\r\n"
                         f"node_id {SIGNER.node_id_hex}\r\n\r\n").encode())
    assert load_identity(path).signing_seed_bytes() == SEED
    write_private(path, f"STT-IDENTITY-V2\nsigning_seed {SEED_HEX}".encode())
    assert load_identity(path) == SIGNER


V2 = b"STT-IDENTITY-V2\n"
SEED_LINE = f"signing_seed {SEED_HEX}\n".encode()
ID_LINE = f"node_id {SIGNER.node_id_hex}\n".encode()


@pytest.mark.parametrize(
    ("content", "where"),
    [
        pytest.param(V2, "line 2: missing", id="no-seed"),
        pytest.param(V2 + SEED_LINE[:-2] + b"\n", "line 2: expected 'signing_seed",
                     id="seed-63-chars"),
        pytest.param(V2 + SEED_LINE[:-1] + b"00\n", "line 2: expected 'signing_seed",
                     id="seed-66-chars"),
        pytest.param(V2 + b"signing_seed " + SEED_HEX[:-2].encode() + b"zz\n",
                     "line 2: expected 'signing_seed", id="seed-not-hex"),
        pytest.param(V2 + b"signing-seed " + SEED_HEX.encode() + b"\n",
                     "line 2: expected 'signing_seed", id="bad-label"),
        pytest.param(V2 + b"signing_seed  " + SEED_HEX.encode() + b"\n",
                     "line 2: expected 'signing_seed", id="two-spaces"),
        pytest.param(V2 + SEED_LINE + b"node_id " + b"00" * 32 + b"\n",
                     "line 3: node_id does not match", id="node-id-mismatch"),
        pytest.param(V2 + SEED_LINE + ID_LINE + b"more\n", "line 4", id="trailing-content"),
        pytest.param(b"STT-IDENTITY-V3\n" + SEED_LINE + ID_LINE,
                     "line 1: expected 'STT-IDENTITY-V1' or 'STT-IDENTITY-V2'",
                     id="unknown-version"),
        pytest.param(b"not an identity file\n", "line 1: expected 'STT-IDENTITY-V1'",
                     id="not-a-key-file"),
    ],
)
def test_malformed_signing_identity_files(tmp_path, content, where):
    path = tmp_path / "node.key"
    write_private(path, content)
    with pytest.raises(ValueError) as info:
        load_identity(path)
    message = str(info.value)
    assert str(path) in message and where in message
    for secret in (SEED_HEX, SEED_HEX[:-2], SEED_HEX[:16], SEED_HEX.upper()[:16]):
        assert secret not in message
    assert info.value.__cause__ is None


def test_an_old_file_with_an_edited_header_is_refused_with_the_reason(tmp_path):
    # Reading the X25519 key as a seed would silently give another node id.
    path = tmp_path / "old.key"
    write_private(path, V2 + f"{LEGACY_KEY.hex()}\nnode_id {LEGACY.node_id_hex}\n".encode())
    with pytest.raises(ValueError) as info:
        load_identity(path)
    message = str(info.value)
    assert "line 2" in message and "STT-IDENTITY-V1" in message and "stt keygen" in message
    assert LEGACY_KEY.hex() not in message and LEGACY_KEY.hex()[:16] not in message


def test_overwriting_a_legacy_file_with_a_signing_identity(tmp_path):
    path = tmp_path / "node.key"
    save_identity(LEGACY, path)
    save_identity(SIGNER, path, overwrite=True)
    assert load_identity(path).can_sign and load_identity(path) == SIGNER


# ---------------------------------------------------------------------------
# The stt command with the new files
# ---------------------------------------------------------------------------


def test_keygen_writes_a_signing_identity_and_id_reads_it(tmp_path):
    path = tmp_path / "me.key"
    made = run("keygen", "--out", str(path))
    assert made.returncode == 0, made.stderr
    node_id = made.stdout.strip()
    lines = path.read_text().splitlines()
    assert lines[0] == "STT-IDENTITY-V2" and lines[1].startswith("signing_seed ")
    assert lines[2] == f"node_id {node_id}"
    loaded = load_identity(path)
    assert loaded.can_sign and loaded.node_id.hex() == node_id
    assert run("id", str(path)).stdout.strip() == node_id
    # The secret never reaches the terminal.
    assert lines[1].split()[1] not in made.stdout + made.stderr


def test_id_still_reads_a_legacy_file(tmp_path):
    path = tmp_path / "old.key"
    save_identity(LEGACY, path)
    result = run("id", "--identity", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == LEGACY.node_id_hex
