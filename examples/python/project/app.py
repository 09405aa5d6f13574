"""An app of several files: the local package it imports travels with it (automount),
and a directory of templates is added to the image (add_local_dir), since only Python
code travels on its own.

    gust run examples/python/project/app.py
"""
import os

import gust
from textkit import shout  # ./textkit: sent because this module imports it

here = os.path.dirname(os.path.abspath(__file__))
image = gust.Image.debian_slim().add_local_dir(os.path.join(here, "templates"), "/opt/gust/app/templates")
app = gust.App("project")


@app.function(image=image)
def greet(name: str) -> str:
    with open(os.path.join(os.path.dirname(__file__), "templates", "greeting.txt")) as f:
        return shout(f.read().strip().format(name=name))


@app.local_entrypoint()
def main():
    print(greet.remote("ada"))
