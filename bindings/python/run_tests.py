#!/usr/bin/env python3
"""Install the Python binding the way users do and test that install (CTest runs this).

  run_tests.py --venv DIR [--python PY] [--no-pytest] [pytest args...]

Creates a fresh virtual environment DIR with PY (default: this interpreter), with
--system-site-packages so the system's pytest is visible, runs `pip install bindings/python`
in it (offline: the build backend is in the tree and needs nothing), runs the README example
(examples/quickstart.py) with the venv's interpreter from outside the source tree, then the
pytest suite with SIBYL_EXPECT_INSTALLED=1 (the tests check that `sibyl` came from the venv).
libsibyl comes from $SIBYL_LIBRARY. Exit status: non-zero on the first failure.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def step(title, cmd, **kwargs):
    print("+ " + " ".join(cmd), flush=True)
    start = time.monotonic()
    out = subprocess.run(cmd, **kwargs)
    print("  (%s: %.1f s)" % (title, time.monotonic() - start), flush=True)
    if out.returncode != 0:
        sys.exit("%s failed with status %d" % (title, out.returncode))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", required=True, help="the virtual environment to create (replaced)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that creates it")
    parser.add_argument("--no-pytest", action="store_true", help="install and run the example only")
    args, pytest_args = parser.parse_known_args()

    if not os.environ.get("SIBYL_LIBRARY"):
        print("note: SIBYL_LIBRARY is not set; the system loader must find libsibyl", flush=True)
    venv = os.path.abspath(args.venv)
    shutil.rmtree(venv, ignore_errors=True)
    step("venv", [args.python, "-m", "venv", "--system-site-packages", venv])
    python = os.path.join(venv, "bin", "python")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    step("pip install", [os.path.join(venv, "bin", "pip"), "install", HERE], env=env)

    with tempfile.TemporaryDirectory() as elsewhere:  # no source tree on sys.path
        out = step("example", [python, os.path.join(HERE, "examples", "quickstart.py")], cwd=elsewhere, env=env,
                   stdout=subprocess.PIPE, text=True)
        print(out.stdout, end="")
        first = out.stdout.splitlines()[0] if out.stdout else ""
        if not ("936" in first and first.endswith(" eos")):
            sys.exit("the example's reply is not the expected one: %r" % first)
        if args.no_pytest:
            return
        env["SIBYL_EXPECT_INSTALLED"] = "1"
        step("pytest", [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-ra",
                        os.path.join(HERE, "tests")] + pytest_args, cwd=elsewhere, env=env)


if __name__ == "__main__":
    main()
