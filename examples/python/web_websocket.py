"""A WebSocket echo with FastAPI, served as an ASGI app: gustd answers the handshake
with the app's 101 and then carries the connection's bytes to and from the container
(docs/API.md "Web endpoints", WebSockets). Connect with any WebSocket client:

    gust deploy examples/python/web_websocket.py
    python3 -m websockets ws://127.0.0.1:8480/default/web-ws/echo/ws   # with an Authorization header

Text comes back prefixed with "echo: ", bytes come back as they are; "close" makes the
server close the connection (code 4000), "count" answers how many messages this
connection received, and "id" the call that serves it. A connection lasts at most the function's timeout.
"""
import gust

app = gust.App("web-ws")
image = gust.Image.debian_slim().apt_install("python3-fastapi")


@app.function(image=image, timeout=600)
@gust.asgi_app()
def echo():
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    web = FastAPI()

    @web.websocket("/ws")
    async def ws(sock: WebSocket):
        await sock.accept()
        received = 0
        try:
            while True:
                msg = await sock.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                received += 1
                if msg.get("text") is not None:
                    text = msg["text"]
                    if text == "close":
                        await sock.close(code=4000, reason="asked to")
                        return
                    if text == "count":
                        await sock.send_text(str(received))
                        continue
                    if text == "id":  # the call serving this connection (gust calls shows it)
                        await sock.send_text(gust.current_function_call_id())
                        continue
                    await sock.send_text("echo: " + text)
                else:
                    await sock.send_bytes(msg["bytes"])
        except WebSocketDisconnect:
            return

    @web.websocket("/refuse")
    async def refuse(sock: WebSocket):
        await sock.close()

    @web.get("/")
    def index():
        return {"websocket": "connect to ./ws"}

    return web
