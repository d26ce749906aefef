"""``python -m cli`` (from a checkout) / ``python -m structgen_cli`` (installed)."""

from .main import main

main()
