"""Run the golden SQL files (tests/golden/*.sql) under APSW's bundled SQLite, with vekter loaded
from the installed `vekter` wheel, and compare with the checked-in expected output of the
sqlite3 shell.

The sqlite3 shell's list mode is reproduced: statements accumulate line by line until complete,
values print as the 3.40 shell prints them (`|` between columns, NULL empty, REAL as `%!.15g`),
EXPLAIN QUERY PLAN as the shell's tree, and errors as `<kind> error near line N: message`.
Before comparing, REALs are rounded to 13 digits (see real_field), and error lines are reduced to `error near line N: message`: whether a failure
is reported at prepare ("Parse") or step ("Runtime") time, the error-code suffix and the caret
under the failing token are the shell's presentation, not vekter's behaviour.

Usage: python golden_apsw.py GOLDEN_DIR (tests/golden: `.read` paths are taken relative to the
repository that holds it, whatever the working directory). Exit status 1 on any difference.
"""

import difflib
import math
import re
import sys
from pathlib import Path

import apsw
import vekter

REAL = re.compile(r"-?\d+\.\d+(?:e[-+]\d+)?")
ERROR_LINE = re.compile(r"^(?:Parse|Runtime) error near line (\d+): (.*?)(?: \(\d+\))?$")


def main():
    golden = Path(sys.argv[1]).resolve()
    failed = 0
    files = sorted(golden.glob("*.sql"))
    for sql in files:
        expected = sql.with_suffix(".expected").read_text()
        actual = run_file(sql, root=golden.parent.parent)
        want, got = normalise(expected), normalise(actual)
        if want != got:
            failed += 1
            print(f"FAILED under SQLite {apsw.sqlite_lib_version()}: {sql}")
            sys.stdout.writelines(difflib.unified_diff(want, got, "expected", "apsw", lineterm="\n"))
    print(f"golden under APSW (SQLite {apsw.sqlite_lib_version()}): "
          f"{len(files) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def normalise(text):
    lines = []
    for line in text.splitlines(keepends=True):
        m = ERROR_LINE.match(line.rstrip("\n"))
        if m:
            lines.append(f"error near line {m.group(1)}: {m.group(2)}\n")
        elif lines and lines[-1].startswith("error near line") and line.startswith("  "):
            continue  # the shell's echo of the failing SQL and its caret
        else:
            lines.append("|".join(map(real_field, line.split("|"))))
    return lines


def real_field(field):
    """A REAL printed by the shell, to 13 significant digits: SQLite 3.40's printf rounds the
    15th digit of an exact tie down (41.80999755859375 → 41.8099975585937), later versions and
    Python round it to even (…938). Other fields (JSON, TEXT, integers) are compared as they are."""
    if not REAL.fullmatch(field.rstrip("\n")):
        return field
    return f"{float(field):.13g}" + ("\n" if field.endswith("\n") else "")


class Shell:
    """The state the dot commands change."""

    def __init__(self, root):
        self.root = root  # `.read` paths are relative to it
        self.conn = apsw.Connection(":memory:")
        self.mode = "list"
        self.bail = False
        self.failed = False


def run_file(path, root):
    shell = Shell(root)
    out = []
    run_lines(shell, path, out)
    return "".join(out)


def run_lines(shell, path, out):
    buffer, start = "", 0
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if shell.failed and shell.bail:
            return
        if not buffer and line.startswith("."):
            dot_command(shell, line, out)
            continue
        if not buffer and (not line.strip() or line.strip().startswith("--")):
            continue  # the shell skips blank and comment-only lines between statements
        if not buffer:
            start = number
        buffer += line + "\n"
        if apsw.complete(buffer):
            execute(shell, buffer, start, out)
            buffer = ""


def dot_command(shell, line, out):
    command, _, argument = line.partition(" ")
    argument = argument.strip()
    if command == ".load":
        if not argument.endswith("vekter"):
            raise SystemExit(f"golden_apsw: only vekter is loaded here, not {argument}")
        vekter.load(shell.conn)
    elif command == ".read":
        run_lines(shell, shell.root / argument, out)
    elif command == ".bail":
        shell.bail = argument == "on"
    elif command == ".mode" and argument in ("list", "box"):
        shell.mode = argument
    elif command == ".print":
        out.append(argument.strip("'") + "\n")
    else:
        raise SystemExit(f"golden_apsw: the dot command {command} is not supported")


def execute(shell, sql, line, out):
    cursor = shell.conn.cursor()
    try:
        if re.match(r"\s*explain\s+query\s+plan\b", sql, re.IGNORECASE):
            out.append(query_plan(cursor.execute(sql).fetchall()))
        elif shell.mode == "box":
            cursor.execute(sql)
            header = [name for name, _ in cursor.getdescription()]
            rows = [[text(v) for v in row] for row in cursor]
            if rows:
                out.append(box(header, rows))
        else:
            for row in cursor.execute(sql):
                out.append("|".join(text(v) for v in row) + "\n")
    except apsw.Error as e:
        shell.failed = True
        kind = "Parse" if isinstance(e, apsw.SQLError) and "syntax" in str(e) else "Runtime"
        out.append(f"{kind} error near line {line}: {e}\n")


def text(value):
    """A value as the 3.40 shell prints it in list mode."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value in (float("inf"), float("-inf")):
            return "Inf" if value > 0 else "-Inf"
        s = f"{value:.15g}"
        mantissa, e, exponent = s.partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return mantissa + e + exponent
    if isinstance(value, bytes):
        return value.split(b"\0")[0].decode("utf-8", "replace")
    return str(value)


def box(header, rows):
    """The shell's `.mode box` table."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def rule(left, middle, right):
        return left + middle.join("─" * (w + 2) for w in widths) + right + "\n"

    def line(cells):
        return "│" + "│".join(f" {c.ljust(w)} " for c, w in zip(cells, widths)) + "│\n"

    return (rule("┌", "┬", "┐") + line(header) + rule("├", "┼", "┤")
            + "".join(line(r) for r in rows) + rule("└", "┴", "┘"))


def query_plan(rows):
    """The shell's EXPLAIN QUERY PLAN tree from (id, parent, notused, detail) rows."""
    children = {}
    for node, parent, _, detail in rows:
        children.setdefault(parent, []).append((node, detail))
    lines = ["QUERY PLAN\n"]

    def render(parent, prefix):
        kids = children.get(parent, [])
        for i, (node, detail) in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'`--' if last else '|--'}{detail}\n")
            render(node, prefix + ("   " if last else "|  "))

    render(0, "")
    return "".join(lines)


if __name__ == "__main__":
    main()
