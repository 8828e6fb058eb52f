"""Recommendation quality: the prequential benchmark as a script (the same code as ``streamrec evaluate``).

Usage: python benchmarks/quality.py [--learners a,b] [--seeds 0,1,2] [--limit N] [--plot out/quality_curve.png]
Prints one table per run, headed by its command line, then how the default learner stands against the targets.
"""

from __future__ import annotations

import sys

from stream.cli.evaluate import command

if __name__ == "__main__":
    command.main(args=sys.argv[1:], prog_name="benchmarks/quality.py")
