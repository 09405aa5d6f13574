"""Container lifecycle hooks: @gust.enter() runs once when a container starts,
@gust.exit() when it stops (it scaled down after scaledown_window idle seconds, or the
app was stopped): flush buffers, close connections. What an exit hook prints is in
`gust logs lifecycle-demo.Counter`.

    gust run examples/python/lifecycle.py
"""
import gust

app = gust.App("lifecycle-demo")


@app.cls(scaledown_window=2)
class Counter:
    @gust.enter()
    def open(self):
        self.seen = []
        print("container started")

    @gust.method()
    def add(self, item: str) -> int:
        self.seen.append(item)
        return len(self.seen)

    @gust.exit()
    def close(self):
        print(f"container stopping after {len(self.seen)} items: {', '.join(self.seen)}")


@app.local_entrypoint()
def main():
    counter = Counter()
    for item in ("a", "b", "c"):
        print("items so far:", counter.add.remote(item))
