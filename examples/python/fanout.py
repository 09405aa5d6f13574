"""Fan-out: 1,000 inputs spread over up to 8 containers with .map(), results in input
order; progress on stderr (`GUST_PROGRESS=1` forces it when stderr is not a terminal).

    gust run examples/python/fanout.py
"""
import gust

app = gust.App("fanout")


@app.function(max_containers=8, cpu=0.25, memory=128)
def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


@app.local_entrypoint()
def main():
    steps = list(collatz_steps.map(range(1, 1001)))
    best = max(range(1000), key=lambda i: steps[i])
    print(f"{len(steps)} results; longest chain below 1001 starts at {best + 1} ({steps[best]} steps)")
