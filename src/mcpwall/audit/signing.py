"""Ed25519 keys and signed checkpoints.

A *checkpoint* states "the chain ``chain`` had ``seq`` records and the last one hashed to
``hash``", signed by the gateway's audit key. Checkpoints are what make truncation and wholesale
rewriting detectable: an attacker who edits the store can recompute hashes, but cannot sign.

The key lives in a PKCS#8 PEM file created on first start with mode 0600 (refused if group- or
world-readable); the public key is written beside it (``<key>.pub``) for verifiers to pin.
``key`` in a checkpoint is the first 16 hex digits of SHA-256 over the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mcpwall.audit.record import FORMAT_VERSION, canonical

_DOMAIN = b"mcpwall-audit-checkpoint/1\n"


class SigningKeyError(Exception):
    """The signing key cannot be used (unreadable, wrong type, unsafe permissions)."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    chain: str
    seq: int
    hash: str
    ts: str
    key: str
    sig: str
    v: int = FORMAT_VERSION

    def signed_bytes(self) -> bytes:
        return _DOMAIN + canonical({"v": self.v, "chain": self.chain, "seq": self.seq, "hash": self.hash,
                                    "ts": self.ts, "key": self.key})

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_obj(cls, obj: Any) -> Checkpoint:
        if not isinstance(obj, dict):
            raise ValueError("a checkpoint is a JSON object")
        try:
            cp = cls(chain=obj["chain"], seq=obj["seq"], hash=obj["hash"], ts=obj["ts"], key=obj["key"],
                     sig=obj["sig"], v=obj.get("v", FORMAT_VERSION))
        except KeyError as exc:
            raise ValueError(f"checkpoint field {exc} is missing") from None
        if not (isinstance(cp.seq, int) and isinstance(cp.hash, str) and isinstance(cp.sig, str)
                and isinstance(cp.chain, str) and isinstance(cp.key, str) and isinstance(cp.ts, str)):
            raise ValueError("checkpoint fields have the wrong types")
        return cp

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        return cls.from_obj(orjson.loads(data))


class Signer:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)
        raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        # A separate key for redaction HMACs, derived so operators manage one secret only.
        self.redaction_key = hashlib.sha256(b"mcpwall-audit-redaction/1" + raw).digest()

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    def checkpoint(self, chain: str, seq: int, hash_: str, ts: str) -> Checkpoint:
        unsigned = Checkpoint(chain=chain, seq=seq, hash=hash_, ts=ts, key=self.key_id, sig="")
        sig = base64.b64encode(self._private.sign(unsigned.signed_bytes())).decode()
        return Checkpoint(chain=chain, seq=seq, hash=hash_, ts=ts, key=self.key_id, sig=sig)

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify_checkpoint(cp: Checkpoint, keys: dict[str, Ed25519PublicKey]) -> str | None:
    """None when ``cp`` is signed by one of ``keys``; otherwise why not."""
    public = keys.get(cp.key)
    if public is None:
        return f"signed by unknown key {cp.key}"
    try:
        public.verify(base64.b64decode(cp.sig, validate=True), cp.signed_bytes())
    except (InvalidSignature, ValueError):
        return "bad signature"
    return None


def public_key_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".pub")


def load_or_create(path: Path) -> Signer:
    """Load the signing key, or create it (0600) with its public key beside it."""
    if path.exists():
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SigningKeyError(f"the audit signing key {path.name} is readable by other users; "
                            f"run: chmod 600 {path}")
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, OSError) as exc:
            raise SigningKeyError(f"cannot load the audit signing key {path.name}: {exc}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(f"the audit signing key {path.name} is not an Ed25519 key")
        signer = Signer(private)
    else:
        signer = Signer.generate()
        pem = signer._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
    pub = public_key_path(path)
    if not pub.exists() or pub.read_bytes() != signer.public_pem():
        tmp = pub.with_name(pub.name + ".tmp")
        tmp.write_bytes(signer.public_pem())
        os.replace(tmp, pub)
    return signer


def load_public_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys (PEM files, or private key files whose public half is used) by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        data = path.read_bytes()
        public: Any
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            public = private.public_key()
        else:
            public = serialization.load_pem_public_key(data)
        if not isinstance(public, Ed25519PublicKey):
            raise SigningKeyError(f"{path.name} is not an Ed25519 key")
        keys[key_id(public)] = public
    return keys
