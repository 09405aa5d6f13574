"""Modal-style calls, unchanged but for the import: spawn / gather / from_id /
spawn_map, the call context, and modal.exception."""
import time

import gust as modal

app = modal.App("compat-calls")


@app.function()
def square(x: int) -> int:
    return x * x


@app.function()
def explode(msg: str):
    raise RuntimeError(msg)


@app.function(timeout=1)
def sleepy(s: float):
    time.sleep(s)


@app.function()
def context() -> tuple:
    return modal.is_local(), modal.current_function_call_id(), modal.current_input_id() is not None


@app.local_entrypoint()
def main():
    calls = [square.spawn(i) for i in range(5)]
    print("gather:", modal.FunctionCall.gather(*calls))
    try:
        modal.FunctionCall.gather(square.spawn(2), explode.spawn("boom"))
    except RuntimeError as e:
        print("gather raised:", e)
    fc = square.spawn(9)
    print("from_id:", modal.FunctionCall.from_id(fc.object_id).get())
    batch = square.spawn_map(range(4))
    print("spawn_map:", [batch.get(index=i) for i in range(batch.num_inputs())])
    try:
        sleepy.remote(10)
    except modal.exception.FunctionTimeoutError:
        print("timeout: FunctionTimeoutError")
    try:
        modal.Function.from_name("compat-calls", "no_such_function").remote()
    except modal.exception.NotFoundError:
        print("lookup: NotFoundError")
    fc = sleepy.spawn(0.5)
    fc.cancel()
    try:
        fc.get()
    except modal.exception.InputCancellation:
        print("cancel: InputCancellation")
    fc = context.spawn()
    local, call_id, has_input = fc.get()
    print("context:", modal.is_local(), local, call_id == fc.object_id, has_input)
