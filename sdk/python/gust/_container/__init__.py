"""What runs only inside a function's container: the runner (`python3 -m
gust._container.runner`), the snapshot template's loop, and the runner protocol's
constants (proto, which the client reads EXC_TAG from too)."""
