"""Reading XLA's HLO text in tests: its computations, an instruction's opcode, the length of each matmul's sum.

Shared by the tests that check what XLA compiled (tests/test_trainer.py, tests/test_model.py,
tests/test_fusion.py), so that they read HLO one way.
"""

from __future__ import annotations

import re


def computations(hlo: str) -> dict[str, list[str]]:
    """Each computation of an HLO module (name -> its instruction lines, stripped)."""
    found, name = {}, ""
    for line in hlo.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            name = line.split()[1] if line.startswith("ENTRY") else line.split()[0]
            found[name] = []
        elif line.startswith("  ") and " = " in line:
            found[name].append(line.strip())
    return found


def opcode(instruction: str) -> str:
    """'dot' for '%x = f32[2,3]{1,0} dot(%a, %b), ...'."""
    return re.search(r" ([a-z][a-z0-9-]*)\(", instruction.split(" = ", 1)[1]).group(1)


def product_pieces(hlo: str) -> list[int]:
    """How many terms each matmul piece of an unoptimized HLO module sums (its operands' shapes are written inline):
    one entry per dot, or per batch of a batched dot."""
    pieces = []
    for line in hlo.splitlines():
        dot = re.search(r" dot\(f32\[([\d,]+)\].*lhs_contracting_dims=\{(\d)\}", line)
        if dot:
            shape = [int(size) for size in dot[1].split(",")]
            batch = re.search(r"lhs_batch_dims=\{(\d)\}", line)
            pieces += [shape[int(dot[2])]] * (shape[int(batch[1])] if batch else 1)
    return pieces
