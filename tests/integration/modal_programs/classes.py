"""Modal-style classes: parameters, lifecycle hooks, with_options, Cls.from_name and
enable_memory_snapshot."""
import os

import gust as modal

app = modal.App("compat-classes")


@app.cls(enable_memory_snapshot=True, scaledown_window=2)
class Embedder:
    model_name: str = modal.parameter(default="tiny")
    dim: int = modal.parameter(default=2)

    @modal.enter(snap=True)
    def load(self):
        self.weights = [len(self.model_name)] * self.dim

    @modal.method()
    def embed(self, text: str) -> list:
        return [w * len(text) for w in self.weights]

    @modal.method()
    def env(self, key: str):
        return os.environ.get(key)

    @modal.exit()
    def shutdown(self):
        print(f"Embedder({self.model_name}, {self.dim}) shutting down")


@app.function()
def add(a: int, b: int) -> int:
    return a + b


@app.local_entrypoint()
def main():
    print("default:", Embedder().embed.remote("abc"))
    print("parameterized:", Embedder(model_name="large", dim=3).embed.remote("abc"))
    Tuned = Embedder.with_options(env={"TUNED": "yes"}, timeout=30)
    print("with_options:", Tuned(dim=1).env.remote("TUNED"), Tuned(dim=1).embed.remote("ab"))
    Looked = modal.Cls.from_name("compat-classes", "Embedder")
    print("from_name:", Looked(model_name="large", dim=3).embed.remote("a"))
    print("function with_options:", add.with_options(retries=2, max_containers=1).remote(2, 3))
    try:
        Embedder(dim="three")
    except modal.exception.InvalidError as e:
        print("bad parameter:", "dim must be int" in str(e))
