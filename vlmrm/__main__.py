import sys

from vlmrm.cli import main

sys.exit(main())
