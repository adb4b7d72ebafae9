"""Coverage-guided runs of the fuzz targets with atheris, when it is installed (``make fuzz``
installs it where a wheel exists for the interpreter; elsewhere the hypothesis runs of
``pytest tests/fuzz`` are the fuzzing). atheris drives each hypothesis test through its
``fuzz_one_input``: the same strategies and properties, mutated by libFuzzer's coverage.

    python -m tests.fuzz.atheris_main [SECONDS [TARGET ...]]

Each target runs in its own process (libFuzzer ends the process when its time is up) for
SECONDS (default 60). A failure prints the falsifying example and leaves ``crash-*`` in
.hypothesis/atheris/<target>/: turn it into a file of tests/fuzz/corpus/<target>/.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

TARGETS = {
    "wire": "tests.fuzz.test_wire:target_chunking",
    "rpc": "tests.fuzz.test_rpc:target_endpoint",
    "urls": "tests.fuzz.test_urls:target_parse",
    "objects": "tests.fuzz.test_objects:target_from_tree",
    "gate": "tests.fuzz.test_gates:target_server_gate",
    "client": "tests.fuzz.test_gates:target_client",
    "state": "tests.fuzz.test_gates:target_state_file",
}


def fuzz_one(name: str, seconds: int) -> None:
    import atheris

    module, _, function = TARGETS[name].partition(":")
    with atheris.instrument_imports(include=["bothways"]):
        importlib.import_module("bothways.wire")
        importlib.import_module("bothways.rpc")
        importlib.import_module("bothways.urls")
        importlib.import_module("bothways.objects")
        importlib.import_module("bothways.transports.tcp")
        importlib.import_module("bothways.transports.file")
    target = getattr(importlib.import_module(module), function)
    folder = os.path.join(".hypothesis", "atheris", name)  # (.hypothesis/ is git-ignored)
    os.makedirs(folder, exist_ok=True)
    args = [sys.argv[0], f"-max_total_time={seconds}", f"-artifact_prefix={folder}/", "-print_final_stats=1"]
    atheris.Setup(args, target.hypothesis.fuzz_one_input)
    atheris.Fuzz()


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--one":
        fuzz_one(argv[1], int(argv[2]))
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: no coverage-guided runs (pytest tests/fuzz fuzzes with hypothesis)")
        return 0
    seconds = int(float(argv[0])) if argv else 60
    failed = []
    for name in argv[1:] or list(TARGETS):
        print(f"== atheris: {name} for {seconds} s", flush=True)
        one = [sys.executable, "-m", "tests.fuzz.atheris_main", "--one", name, str(seconds)]
        if subprocess.run(one, check=False).returncode != 0:
            failed.append(name)
    print("atheris: " + (f"failures in {', '.join(failed)}" if failed else "no failures"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
