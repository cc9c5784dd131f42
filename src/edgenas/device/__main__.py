import sys

from edgenas.device import main

sys.exit(main())
