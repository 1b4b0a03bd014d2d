"""A pico-client-auth 0.7.1 consumer, driven by tests/interop_pico_client.rs.

Validates an access token through wallet-auth's JWKS and polls wallet-auth's
/revoked-jtis with a service token, exactly as a pico service does.

argv: jwks_url revoked_url service_token access_token
Environment: CONSUMER_ALGORITHMS, the comma-separated `accepted_algorithms`
(default RS256; ML-DSA-65 for the post-quantum test, whose `oqs` import is
served by tests/interop/oqs_adapter on PYTHONPATH).
Protocol on stdout: "VALID <sub> <role>" after the first validation; then it
waits for a line on stdin, forces a denylist refresh, validates again and
prints "REJECTED <reason>" or "STILL-VALID".
"""
import asyncio
import os
import sys

from pico_client_auth.config import AuthClientSettings
from pico_client_auth.errors import TokenInvalidError
from pico_client_auth.jwks_client import JWKSClient
from pico_client_auth.revocation_cache import RevocationCache
from pico_client_auth.token_validator import TokenValidator


async def main() -> None:
    jwks_url, revoked_url, service_token, access_token = sys.argv[1:5]
    settings = AuthClientSettings(
        issuer="http://localhost:8100",
        audience="pico",
        jwks_endpoint=jwks_url,
        revocation_endpoint=revoked_url,
        revocation_bearer=service_token,
        revocation_ttl_seconds=1,
        accepted_algorithms=tuple(os.environ.get("CONSUMER_ALGORITHMS", "RS256").split(",")),
    )
    revocations = RevocationCache(settings)
    validator = TokenValidator(settings, JWKSClient(settings), revocations)
    claims, _raw = await validator.validate(access_token)
    assert revocations._last_fetch_ok, "the denylist poll with the service token failed"
    print(f"VALID {claims.sub} {claims.role}", flush=True)
    sys.stdin.readline()
    revocations._fetched_at = 0.0  # the next check polls /revoked-jtis again
    try:
        await validator.validate(access_token)
        print("STILL-VALID", flush=True)
    except TokenInvalidError as exc:
        print(f"REJECTED {exc}", flush=True)


asyncio.run(main())
