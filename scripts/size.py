"""Print the longest modules and functions in src/ (STYLE rule 12: aims, not gates).

python scripts/size.py [--top 15]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "convforge"


def functions(tree: ast.AST, path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top", type=int, default=15)
    top = parser.parse_args().top
    modules, funcs = [], []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        modules.append((len(text.splitlines()), str(path.relative_to(ROOT))))
        funcs += functions(ast.parse(text), path)
    lengths = sorted(n for n, _ in funcs)
    print(
        f"{len(modules)} modules, {sum(n for n, _ in modules):,} lines; {len(funcs)} functions, "
        f"median {lengths[len(lengths) // 2]} lines"
    )
    print("\nlongest modules:")
    for n, name in sorted(modules, reverse=True)[:top]:
        print(f"  {n:5d}  {name}")
    print("\nlongest functions:")
    for n, name in sorted(funcs, reverse=True)[:top]:
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main()
