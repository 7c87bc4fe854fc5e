"""`python -m tools.schemas [--check] [DIR]`, from the repository root."""

from __future__ import annotations

from tools.schemas.cli import main

raise SystemExit(main())
