"""Download the study's datasets into this folder with a sha256 check.

    python data/download.py                 # dianping.csv (2000 reviews)
    python data/download.py --all           # also online_shopping_10_cats.csv (62,774 reviews)

Same as `jaxsenti download [--all]`. Files already present (here or in $JAXSENTI_DATA_DIR)
are verified, not downloaded again.
"""

import sys
from pathlib import Path

from jaxsenti.cli import main

if __name__ == "__main__":
    sys.exit(main(["download", "--dest", str(Path(__file__).parent), *sys.argv[1:]]))
