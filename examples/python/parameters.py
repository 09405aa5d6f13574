"""A parameterized class: Model(size=...) names one configured instance. Each
parameter set runs in containers of its own, and the instance has its parameter values
before its enter hook loads what they say (here: a lookup table of that size).

    gust run examples/python/parameters.py
"""
import os

import gust

app = gust.App("params-demo")


@app.cls()
class Model:
    size: int = gust.parameter(default=4)
    name: str = gust.parameter(default="squares")

    @gust.enter()
    def load(self):
        print(f"loading {self.name} table of size {self.size}")  # once per container
        self.table = [i * i for i in range(self.size)]
        self.container = os.environ["GUST_CONTAINER_ID"]

    @gust.method()
    def lookup(self, i: int) -> int:
        return self.table[i % self.size]

    @gust.method()
    def where(self) -> str:
        return self.container


@app.local_entrypoint()
def main():
    small, big = Model(), Model(size=100, name="big squares")
    print("small:", [small.lookup.remote(i) for i in (3, 5)])
    print("big:", [big.lookup.remote(i) for i in (3, 50)])
    print("separate containers:", small.where.remote() != big.where.remote())
    print("same set, same containers:", Model(size=100, name="big squares").where.remote() == big.where.remote())
