"""Run the main job: ``python -m sk_meanclf``."""

import sys

from sk_meanclf._cli import main

sys.exit(main())
