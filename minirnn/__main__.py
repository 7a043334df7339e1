"""``python -m minirnn``: the demo (the README's main job) with no command, or the command line
(:mod:`minirnn.cli`) with one: ``python -m minirnn train|evaluate|predict|export ...``."""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        from .cli import build_parser
        print(build_parser().format_help())
        print("'python -m minirnn COMMAND ...' is the same as 'minirnn COMMAND ...'. Without a command,\n"
              "'python -m minirnn' runs the demo, which takes these options:\n")
        from .demo import main as demo
        demo(["--help"])                               # prints the demo's options and exits
    if argv and not argv[0].startswith("-"):
        from .cli import main as cli
        return cli(argv)
    from .demo import main as demo
    demo(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
