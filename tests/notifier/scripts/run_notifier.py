"""Run `appliance notifier` with block documents read from a JSON file (test harness).

The notifier resolves blocks through notifier.blocks_access; the subprocess tests point
that at APPLIANCE_TEST_BLOCKS_FILE ({id: [slug, data]}) and then run the real main().
"""

import json
import os
import sys

from appliance.cli import main
from notifier import blocks_access

with open(os.environ["APPLIANCE_TEST_BLOCKS_FILE"]) as handle:
    store = {k: tuple(v) for k, v in json.load(handle).items()}
blocks_access.set_resolver(store.get)
sys.exit(main(["notifier", *sys.argv[1:]]))
