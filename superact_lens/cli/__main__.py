import sys

from superact_lens.cli import main

sys.exit(main())
