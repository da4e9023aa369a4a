import sys

from aclecg_cli.main import main

sys.exit(main())
