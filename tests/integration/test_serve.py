"""`gust serve FILE.py` (docs/CLI.md): the app is deployed as an ephemeral copy
(APP-dev), the web endpoint's URL is printed, an edit of the file is redeployed (the
URL answers the new value), so is a change of a file the image adds with
add_local_file, and SIGINT stops the copy (GET /v1/apps)."""
import json
import os
import queue
import signal
import threading
import time
import urllib.error
import urllib.request

from gustlib import wait_until

APP = '''
import os

import gust

app = gust.App("served")
IMAGE = gust.Image.from_name("python").add_local_file(os.path.join(os.path.dirname(__file__), "extra.txt"),
                                                      "/srv/extra.txt")


@app.function(image=IMAGE)
@gust.web_endpoint(method="GET")
def hello():
    print("serving VALUE")
    with open("/srv/extra.txt") as f:
        return {"value": "VALUE", "extra": f.read()}
'''


def _lines(stream, q):
    for raw in iter(stream.readline, b""):
        q.put(raw.decode("utf-8", "replace"))


def test_serve_redeploys_on_change_and_stops_on_sigint(shared_gust, tmp_path):
    g = shared_gust
    src = tmp_path / "served.py"
    src.write_text(APP.replace("VALUE", "one"))
    extra = tmp_path / "extra.txt"
    extra.write_text("first")
    p = g.cli_popen("serve", str(src))
    out, err = queue.Queue(), queue.Queue()
    threading.Thread(target=_lines, args=(p.stdout, out), daemon=True).start()
    threading.Thread(target=_lines, args=(p.stderr, err), daemon=True).start()
    seen = []

    def line_with(text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = out.get(timeout=0.5)
            except queue.Empty:
                assert p.poll() is None, (p.returncode, seen, list(err.queue))
                continue
            seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {seen} (stderr: {list(err.queue)})")

    def get(url):
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {g.admin_token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                answer = json.loads(r.read())
                return f"{answer['value']}/{answer['extra']}"
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code}"

    try:
        line_with("serving app served-dev", 300)
        url = line_with("web endpoint served-dev.hello:", 60).rsplit(" ", 1)[1].strip()
        assert url.endswith("/served-dev/hello"), url
        assert get(url) == "one/first"
        line_with("[hello] serving one", 30)                 # remote output shown as gust run shows it
        time.sleep(1.1)  # a later mtime than the first version's, on any filesystem's clock
        src.write_text(APP.replace("VALUE", "two"))
        line_with("redeployed (2)", 120)
        wait_until(lambda: get(url) == "two/first", 60, interval=0.2, msg="the new version answering")
        time.sleep(1.1)
        extra.write_text("second")  # only the added file changes
        line_with("redeployed (3): ", 120)
        wait_until(lambda: get(url) == "two/second", 60, interval=0.2, msg="the new file served")
        apps = {a["name"]: a["state"] for a in g.get_json("/v1/apps")["apps"]}
        assert apps.get("served-dev") == "deployed" and "served" not in apps, apps
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 0, list(err.queue)
        line_with("stopped app served-dev", 5)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    apps = {a["name"]: a["state"] for a in g.get_json("/v1/apps")["apps"]}
    assert apps["served-dev"] == "stopped", apps
    assert not any("Traceback" in x for x in err.queue), list(err.queue)
    assert os.path.exists(src)
