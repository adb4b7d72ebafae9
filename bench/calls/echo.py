"""Raw pipe ping-pong (no JSON-RPC): for each line read, write the same answer line back."""

import os
import sys

ANSWER = sys.argv[1].encode() + b"\n"

while data := os.read(0, 65536):
    if lines := data.count(b"\n"):
        os.write(1, ANSWER * lines)
