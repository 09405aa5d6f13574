"""A secret read from the environment: the value never appears in the spec, in gustd's
log or in `gust secret ls` (names and keys only). Two ways to give one:

    gust secret create weather-api API_TOKEN=...      # stored once, by name
    API_TOKEN=... gust run examples/python/secret.py  # from this shell, at deploy

This example uses the second (Secret.from_local_environ) when API_TOKEN is set here,
and the stored secret "weather-api" otherwise.
"""
import hashlib
import os

import gust

app = gust.App("secret-demo")
if "API_TOKEN" in os.environ:
    token = gust.Secret.from_local_environ(["API_TOKEN"])
else:
    token = gust.Secret.from_name("weather-api", required_keys=["API_TOKEN"])


@app.function(secrets=[token, gust.Secret.from_dict({"API_BASE": "https://weather.invalid/v1"})])
def fetch_config():
    value = os.environ["API_TOKEN"]
    # Prove the function got it without printing it.
    return {"api_base": os.environ["API_BASE"], "token_sha256": hashlib.sha256(value.encode()).hexdigest()[:12],
            "token_length": len(value)}


@app.local_entrypoint()
def main():
    print(fetch_config.remote())
