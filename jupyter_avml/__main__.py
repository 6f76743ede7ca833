import sys

from jupyter_avml.cli.main import main

sys.exit(main())
