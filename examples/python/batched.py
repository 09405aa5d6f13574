"""Dynamic batching (@gust.batched, as Modal's): the function takes lists and returns a
list; callers pass single values, and the container calls it once per batch of up to
max_batch_size inputs, waiting at most wait_ms for a batch to fill.

    gust run examples/python/batched.py
"""
from concurrent.futures import ThreadPoolExecutor

import gust

app = gust.App("batched")


@app.function()
@gust.batched(max_batch_size=8, wait_ms=500)
def multiply(xs: list[int], ys: list[int]) -> list[tuple[int, int]]:
    # Each caller's product, with the size of the batch it came in (to show batching).
    return [(x * y, len(xs)) for x, y in zip(xs, ys)]


@app.cls()
class Embedder:
    # On a class, @gust.batched takes the place of @gust.method() (one such method).
    @gust.batched(max_batch_size=4, wait_ms=200)
    def embed(self, texts: list[str]) -> list[list[int]]:
        return [[len(t), len(texts)] for t in texts]


@app.local_entrypoint()
def main():
    with ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(lambda i: multiply.remote(i, 10), range(16)))
    print("products:", [p for p, _ in got])
    print("batched:", max(size for _, size in got) > 1)
    print("map:", sum(p for p, _ in multiply.map(range(50), [2] * 50)))
    print("embed:", [v[0] for v in Embedder().embed.map(["a", "bb", "ccc"])])
