"""Modal-style program with no local entrypoint, unchanged but for the import: `gust run`
picks what to run as `modal run` does (FILE.py::fn, FILE.py::app.Cls.method), and run
as a script (python3 scripts.py) it uses `with app.run():`, quiet unless inside
`modal.enable_output()`."""
import gust as modal

app = modal.App("compat-scripts")


@app.function()
def hello(name: str = "world") -> str:
    print(f"hello, {name}, from {'here' if modal.is_local() else 'a container'}")
    return name


@app.cls()
class Greeter:
    @modal.method()
    def greet(self):
        print("greetings from the class")


@app.function()
def numbers():
    yield from range(3)


if __name__ == "__main__":
    with app.run():
        print("quiet run:", hello.remote("script"))
    with modal.enable_output():
        with app.run():
            print("shown run:", hello.remote("output"))
