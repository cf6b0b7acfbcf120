"""``python -m lerowds.lerobot_train <lerobot-train arguments> --lerowds.source=...``: same as ``lerowds train``."""

import sys

from lerowds.train import main

if __name__ == "__main__":
    sys.exit(main())
