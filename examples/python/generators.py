"""Generators and async functions, as in Modal: a generator function streams each value
it yields to the caller while it still runs (.remote_gen()), and an async function is
awaited from a coroutine (.remote.aio(); every call has its .aio form). The local
entrypoint is itself async: `gust run` runs it to its end.

    gust run examples/python/generators.py
"""
import asyncio

import gust

app = gust.App("generators")


@app.function()
def countdown(n: int):
    for i in range(n, 0, -1):
        print(f"t-minus {i}")  # shows in `gust logs generators.countdown`, with the call id
        yield i
    yield "liftoff"


@app.function()
def shout(text: str):
    for word in text.split():
        yield word.upper()


@app.function()
async def measure(url: str) -> int:
    await asyncio.sleep(0.01)  # stands for an async HTTP request; inputs of a container share its event loop
    return len(url)


@app.function()
async def squares(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield i * i


@app.local_entrypoint()
async def main():
    async for value in countdown.remote_gen.aio(3):  # each value as soon as the container yields it
        print(value)
    print(" ".join(shout.remote_gen("streamed as they are produced")))  # the blocking form: nothing else awaits here
    print(await asyncio.gather(*(measure.remote.aio(u) for u in ["a.example", "bb.example"])))
    print([x async for x in squares.remote_gen.aio(4)])
