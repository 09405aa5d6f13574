"""A job that fails and is retried: the first two attempts raise, the third succeeds.
Retries back off (0.2 s, then 0.4 s); attempts are counted in a file under /tmp of
the container, which a retry in the same container sees.

    gust run examples/python/retry.py
"""
import os

import gust

app = gust.App("retry-job")


@app.function(retries=gust.Retries(max_retries=3, initial_delay=0.2, backoff_coefficient=2.0),
              max_containers=1)
def flaky_job(job_id: str) -> str:
    marker = f"/tmp/attempts-{job_id}"
    attempt = (int(open(marker).read()) if os.path.exists(marker) else 0) + 1
    with open(marker, "w") as f:
        f.write(str(attempt))
    if attempt < 3:
        print(f"job {job_id}: attempt {attempt} fails")
        raise ConnectionError(f"attempt {attempt}: upstream not ready")
    return f"job {job_id} succeeded on attempt {attempt}"


@app.function(retries=1)
def always_fails():
    raise ValueError("this job cannot succeed")


@app.local_entrypoint()
def main():
    print(flaky_job.remote("nightly"))
    try:
        always_fails.remote()
    except ValueError as e:
        print(f"always_fails gave up after its retry: ValueError: {e}")
