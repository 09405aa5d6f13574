"""Modal-style program whose local entrypoint takes parameters from the command line,
unchanged but for the import: `gust run params.py --prompt hi --n 3 --no-shout`, as
`modal run` turns a local entrypoint's parameters into options."""
import datetime
from typing import Optional

import gust as modal

app = modal.App()  # named after the file, "params", as Modal allows


@app.function()
def render(prompt: str, n: int, shout: bool) -> str:
    text = " ".join([prompt] * n)
    return text.upper() if shout else text


@app.local_entrypoint()
def main(prompt: str, n: int = 2, shout: bool = True, ratio: float = 0.5,
         when: Optional[datetime.datetime] = None, max_tokens: int = 16):
    print("render:", render.remote(prompt, n, shout))
    print("types:", type(ratio).__name__, ratio, when.isoformat() if when else None, max_tokens)
