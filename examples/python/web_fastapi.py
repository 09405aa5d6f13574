"""FastAPI two ways: a whole app served as an ASGI app, and a single function behind
FastAPI with fastapi_endpoint (FastAPI checks and converts its arguments).

    gust deploy examples/python/web_fastapi.py
"""
import gust

app = gust.App("web-fastapi")
image = gust.Image.debian_slim().apt_install("python3-fastapi")


@app.function(image=image)
@gust.asgi_app()
def api():
    from fastapi import FastAPI

    web = FastAPI()

    @web.get("/items/{item_id}")
    def item(item_id: int, q: str = ""):
        return {"item_id": item_id, "q": q}

    @web.post("/items")
    async def create(body: dict):
        return {"created": body}

    return web


@app.function(image=image)
@gust.fastapi_endpoint(method="GET")
def square(x: int):
    return {"square": x * x}
