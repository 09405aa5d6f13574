"""Parallel execution with spawn and gather: start calls without waiting, collect their
results together, fetch one later by its id (from any process), and fan a batch out
with spawn_map. A failing call makes gather raise that call's exception.

    gust run examples/python/gather.py
"""
import time

import gust

app = gust.App("gather-demo")


@app.function()
def step1(word: str) -> str:
    time.sleep(1)
    return word


@app.function()
def step2(number: int) -> int:
    if number == 0:
        raise ValueError("custom error")
    return number


@app.function()
def tagged(x: int) -> str:
    # The call this input belongs to: the id .spawn() returned.
    return f"{x} by {gust.current_function_call_id()}"


@app.local_entrypoint()
def main():
    word_call = step1.spawn("foo")
    number_call = step2.spawn(2)
    print(word_call.get() * number_call.get())

    print(gust.FunctionCall.gather(step1.spawn("bar"), step2.spawn(4)))
    try:
        gust.FunctionCall.gather(step1.spawn("bar"), step2.spawn(0))
    except ValueError as exc:
        print("gather raised:", exc)

    # Keep only the id; get the result back later, here or in another process.
    call_id = tagged.spawn(7).object_id
    result = gust.FunctionCall.from_id(call_id).get()
    print("from_id:", result == f"7 by {call_id}")

    batch = step2.spawn_map([1, 2, 3])  # returns once the inputs are queued
    print("spawn_map:", batch.num_inputs(), "inputs ->", list(batch.iter()))
