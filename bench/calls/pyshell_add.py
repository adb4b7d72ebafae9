"""python-shell's side of the calls benchmark: one JSON request per line, one JSON answer per line."""

import json
import sys

for line in sys.stdin:
    request = json.loads(line)
    print(json.dumps(request["a"] + request["b"]), flush=True)
