"""Any HTTP server as a web endpoint (@gust.web_server, Modal's): the function starts the
server in its container and returns; once the port accepts connections the container
is ready, and every request under the endpoint's URL is proxied to it by the
container's runner (streamed both ways as it comes).

    gust deploy examples/python/web_server.py
    curl -H "Authorization: Bearer $GUST_TOKEN" "$(gust ls | grep -o 'http://[^ ]*/files')/hello.txt"
    curl -H "Authorization: Bearer $GUST_TOKEN" -d 'some bytes' "$(gust ls | grep -o 'http://[^ ]*/echo')/"
"""
import subprocess

import gust

app = gust.App("web-server")

SITE = "/tmp/site"


@app.function(max_containers=1)
@gust.concurrent(max_inputs=8)  # http.server serves each request on a thread of its own
@gust.web_server(8000, startup_timeout=10.0, label="files")
def files():
    """Python's own file server over a directory written here, at container start."""
    import os
    os.makedirs(SITE, exist_ok=True)
    with open(f"{SITE}/hello.txt", "w") as f:
        f.write("hello from a web server\n")
    with open(f"{SITE}/index.html", "w") as f:
        f.write("<h1>files</h1>\n")
    subprocess.Popen(["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0", "--directory", SITE])


@app.function()
@gust.concurrent(max_inputs=4)
@gust.web_server(8001)
def echo():
    """A stdlib server on a thread of the container: answers a POST with what it got."""
    import http.server
    import json
    import threading

    class Echo(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the runner reuses its connections

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            out = json.dumps({"path": self.path, "length": len(body), "body": body.decode("utf-8", "replace"),
                              "content_type": self.headers.get("Content-Type"),
                              "forwarded_for": self.headers.get("X-Forwarded-For"),
                              "forwarded_proto": self.headers.get("X-Forwarded-Proto")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 8001), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
