"""HTTP endpoints from plain functions (stdlib only): query parameters (GET) or the JSON
body (POST) are the arguments, the return value is the JSON response.

    gust deploy examples/python/web_hello.py
    curl -H "Authorization: Bearer $GUST_TOKEN" "$(gust ls | grep -o 'http://[^ ]*hello')?name=ada"
"""
import gust

app = gust.App("web-hello")


@app.function()
@gust.web_endpoint(method="GET")
def hello(name: str = "world", excited: bool = False):
    print(f"greeting {name}")
    return {"greeting": f"hello, {name}" + ("!" if excited else "")}


@app.function()
@gust.web_endpoint(method="POST", label="add")
def add_numbers(a: float, b: float):
    return {"sum": a + b}


@app.function()
@gust.web_endpoint(public=True)  # no token needed
def status():
    return gust.Response("ok\n", media_type="text/plain")
