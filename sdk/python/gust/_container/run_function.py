"""The build step of Image.run_function:
`python3 -m gust._container.run_function MODULE_FILE QUALNAME ARGS` imports the module
as a container's runner does and calls the function with ARGS (base64 of
pickle((args, kwargs))). Its exit status is the step's: an exception fails the build,
its traceback in the step's output."""
import base64
import pickle
import sys

from .runner import load


def main(argv):
    module_file, qualname, blob = argv
    fn = load(module_file, qualname)
    args, kwargs = pickle.loads(base64.b64decode(blob))
    fn(*args, **kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
