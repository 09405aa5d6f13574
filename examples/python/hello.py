"""Hello world: one function, called once remotely and once per name with .map().

    gust run examples/python/hello.py
"""
import gust

app = gust.App("hello")


@app.function()
def hello(name: str) -> str:
    print(f"saying hello to {name}")  # gust run shows it: "[hello] saying hello to ..."
    return f"hello, {name}!"


@app.local_entrypoint()
def main():
    print(hello.remote("world"))
    for line in hello.map(["ada", "grace"]):
        print(line)
