"""Command line: ``python -m app hit NAME [BY]`` | ``get NAME`` | ``top [N]`` | ``reset NAME``."""

from __future__ import annotations

import sys

import psycopg

from app import counter

USAGE = "usage: python -m app {hit NAME [BY] | get NAME | top [N] | reset NAME}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE, file=sys.stderr if not args else sys.stdout)
        return 2 if not args else 0
    command, rest = args[0], args[1:]
    try:
        with counter.connect() as conn:
            counter.create_schema(conn)
            if command == "hit" and len(rest) in (1, 2):
                print(counter.hit(conn, rest[0], int(rest[1]) if len(rest) == 2 else 1))
            elif command == "get" and len(rest) == 1:
                print(counter.get(conn, rest[0]))
            elif command == "top" and len(rest) <= 1:
                for name, count in counter.top(conn, int(rest[0]) if rest else 10):
                    print(f"{count}\t{name}")
            elif command == "reset" and len(rest) == 1:
                print("reset" if counter.reset(conn, rest[0]) else "unknown")
            else:
                print(USAGE, file=sys.stderr)
                return 2
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"error: cannot use the database: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
