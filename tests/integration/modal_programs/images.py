"""Modal-style images and app defaults: debian_slim(python_version=...), imports() for
packages only the image has, run_function at build time, App(image=..., secrets=...)."""
import os

import gust as modal


def bake():
    os.makedirs("/assets", exist_ok=True)
    with open("/assets/baked.txt", "w") as f:
        f.write("baked while building, local=%s" % modal.is_local())


image = (modal.Image.debian_slim(python_version="3.11")
         .apt_install("python3-yaml")
         .run_function(bake))
app = modal.App("compat-images", image=image, secrets=[modal.Secret.from_dict({"APP_SECRET": "s3"})])

with image.imports():
    import yaml


@app.function()
def parse(text: str):
    return yaml.safe_load(text), open("/assets/baked.txt").read(), os.environ.get("APP_SECRET")


@app.local_entrypoint()
def main():
    data, baked, secret = parse.remote("a: 1\nb: [x, y]\n")
    print("yaml:", data)
    print("baked:", baked)
    print("secret:", secret)
