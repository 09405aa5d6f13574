"""A Flask app served by Gust as a WSGI app: each request goes to the app directly in
its container (no HTTP server in between).

    gust deploy examples/python/web_flask.py
"""
import gust

app = gust.App("web-flask")
image = gust.Image.debian_slim().apt_install("python3-flask")


@app.function(image=image)
@gust.wsgi_app()
def flask_app():
    from flask import Flask, jsonify, request

    web = Flask(__name__)

    @web.get("/")
    def index():
        return "hello from flask\n"

    @web.post("/echo")
    def echo():
        return jsonify(got=request.get_json(), path=request.path, root=request.script_root)

    return web
