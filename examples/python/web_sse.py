"""Server-sent events: a stdlib endpoint whose response is streamed as it is produced;
each event reaches the client when the handler yields it.

    gust deploy examples/python/web_sse.py
    curl -N -H "Authorization: Bearer $GUST_TOKEN" <URL of ticks>?n=5
"""
import threading
import time

import gust

app = gust.App("web-sse")
_released = threading.Event()


@app.function(max_containers=1)
@gust.concurrent(max_inputs=2)
@gust.web_endpoint()
def ticks(n: int = 3, wait: bool = False, release: bool = False):
    """n events a tenth of a second apart. wait=true: after the first event, wait until a
    request with release=true comes (to the same container: max_containers=1)."""
    if release:
        _released.set()
        return {"released": True}

    def events():
        for i in range(n):
            if i == 1 and wait:
                yield "data: released\n\n" if _released.wait(60) else "data: never released\n\n"
            yield f"data: tick {i}\n\n"
            time.sleep(0.1)
    return gust.Response(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
