"""``python -m minirnn``: the demo (the README's main job) with no command, or the command line
(:mod:`minirnn.cli`) with one: ``python -m minirnn train|evaluate|predict|export|info|plot ...``."""

import os
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        from .cli import build_parser
        from .demo import main as demo
        try:
            print(build_parser().format_help())
            print("'python -m minirnn COMMAND ...' is the same as 'minirnn COMMAND ...'. Without a command,\n"
                  "'python -m minirnn' runs the demo, which takes these options:\n")
            try:
                demo(["--help"])                       # prints the demo's options and exits
            finally:
                sys.stdout.flush()
        except BrokenPipeError:                        # `python -m minirnn --help | head -1`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    if argv and (not argv[0].startswith("-") or argv[0] == "--version"):
        from .cli import main as cli
        return cli(argv)
    from .demo import main as demo
    demo(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
