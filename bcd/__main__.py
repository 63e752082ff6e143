"""``python -m bcd`` (what ``torchrun -m bcd`` and ``bcd ... --nproc K`` start on every rank)."""

from bcd.cli import main

raise SystemExit(main())
