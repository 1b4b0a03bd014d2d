"""Runs pico-server-auth 0.2.2 standalone under uvicorn, for bench/run.sh.

usage: python pico_app.py PORT DATA_DIR FLEET_SECRET ADMIN_PASSWORD

The app is built the way pico-server-auth's README describes a standalone
auth service (pico_boot.init + container.get(FastAPI)). pico-client-auth's
middleware is disabled (auth_client.enabled = false), as in pico-server-auth's
own runner config: the gated routes are then open, which is how the issue's
figures were taken. The revocation store and mint audit are JSON Lines files
(fsync'd per append by pico), so /revoke is durable as ours is.
"""

import logging
import sys

import uvicorn
from fastapi import FastAPI
from pico_boot import init
from pico_ioc import DictSource, configuration

port, data_dir, fleet_secret, admin_password = sys.argv[1:5]
config = configuration(
    DictSource(
        {
            "server_auth": {
                "issuer": "http://localhost:8100",
                "audience": "pico",
                "challenge_ttl_seconds": 3600,
                "auto_create_admin": True,
                "admin_password": admin_password,
                "fleet_mint_secret": fleet_secret,
                "revocation_store_path": f"{data_dir}/revocations.jsonl",
                "mint_audit_path": f"{data_dir}/mints.jsonl",
            },
            "auth_client": {"enabled": False},
        }
    )
)
container = init(modules=[], config=config)
app = container.get(FastAPI)
logging.getLogger("pico_server_auth").setLevel(logging.WARNING)
print(f"pico-server-auth listening on http://127.0.0.1:{port}", flush=True)
uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)
