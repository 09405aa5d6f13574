"""Overriding a function's options at call time: the same code with more memory, a
shorter timeout or extra environment, each variant with containers of its own.
Exceptions keep Modal's names (gust.exception).

    gust run examples/python/with_options.py
"""
import os
import time

import gust

app = gust.App("options-demo")


@app.function(memory=128, timeout=60)
def work(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ.get("MODE", "default")


@app.local_entrypoint()
def main():
    print("base:", work.remote(0))
    big = work.with_options(memory=512, env={"MODE": "big"})
    print("with_options:", big.remote(0), "as", big.name)
    hasty = work.with_options(timeout=1)
    try:
        hasty.remote(5)
    except gust.exception.FunctionTimeoutError:
        print("timeout=1 stopped the call")
