"""Recommendation quality: the prequential benchmark as a script (the same code as ``streamrec evaluate``).

Usage: python benchmarks/quality.py [--learners a,b] [--seeds 0,1,2] [--limit N] [--score-from N]
[--retrain-epochs E] [--plot out/quality_curve.png]
Prints the table headed by its command line (with ``--score-from``, two: the whole stream and from event N on),
after each how the default learner stands against the targets, then one ``EVAL`` line per learner.
"""

from __future__ import annotations

import sys

from stream.cli.evaluate import command

if __name__ == "__main__":
    command.main(args=sys.argv[1:], prog_name="benchmarks/quality.py")
