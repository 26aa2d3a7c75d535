"""`python -m evalsuites.genai build OUT_DIR`: convert SmolLM2's GGUF and build the datasets (see build.py)."""

from __future__ import annotations

import sys

from evalsuites.genai.build import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
