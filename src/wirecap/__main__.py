import sys

from wirecap.cli.main import main

sys.exit(main())
