"""A stand-in for liboqs-python's `oqs` module, for the interop tests only.

pico-client-auth 0.7.1 verifies ML-DSA tokens (pico_client_auth/pqc_jwt.py)
with exactly one call into liboqs-python:

    oqs.Signature(algorithm).verify(message, signature, public_key) -> bool

liboqs-python's wheel carries no liboqs and tries to download and build it at
import, which cannot work here (no network but the package registries). This
module serves that one call with Python `cryptography`'s ML-DSA-65 (48 or
newer; OpenSSL's implementation): pure ML-DSA with the empty context, as
liboqs verifies. tests/interop_pico_client.rs puts this directory on
PYTHONPATH for the consumer process only; pico-client-auth's own code runs
unchanged.
"""
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

__all__ = ["MechanismNotSupportedError", "Signature"]

_KEYS = {"ML-DSA-65": mldsa.MLDSA65PublicKey}


class MechanismNotSupportedError(Exception):
    """As liboqs-python raises for an algorithm it does not enable."""


class Signature:
    """`oqs.Signature`, verification only."""

    def __init__(self, alg_name: str, secret_key: bytes | None = None) -> None:
        if alg_name not in _KEYS:
            raise MechanismNotSupportedError(alg_name)
        if secret_key is not None:
            raise NotImplementedError("the adapter only verifies")
        self.method_name = alg_name

    def verify(self, message: bytes, signature: bytes, public_key: bytes) -> bool:
        try:
            key = _KEYS[self.method_name].from_public_bytes(bytes(public_key))
        except ValueError:
            return False
        try:
            key.verify(bytes(signature), bytes(message))
        except InvalidSignature:
            return False
        return True

    def __enter__(self) -> "Signature":
        return self

    def __exit__(self, *exc) -> None:
        return None
