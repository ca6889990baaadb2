"""``python -m mcpwall``: the same entry point as the ``mcpwall`` command."""

from mcpwall.cli import main

if __name__ == "__main__":
    main(prog_name="mcpwall")
