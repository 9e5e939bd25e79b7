import sys

from unimumer.cli import main

sys.exit(main())
