"""The interpreter exits cleanly with everything still open: running requests with on_event
callbacks on the library's worker, a log callback, a daemon thread inside a blocking call, a
worker-less model with a pending request. (At exit every handle is finalized, newest first.)"""
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import BINDING, MODEL_DIR

SCRIPTS = {
    "requests_with_callbacks": """
        sibyl.set_log_callback(lambda level, message: None, "debug")
        m = sibyl.Model(MODEL)
        s = m.session()
        r = s.submit_generate([0, 5], max_new_tokens=100000, stop_at_eos=False, on_event=lambda e: None)
        s2 = m.session()
        r2 = s2.submit_chat([{"role": "user", "content": "What is 1 + 2?"}])
        time.sleep(0.05)
    """,
    "daemon_thread_in_a_blocking_call": """
        m = sibyl.Model(MODEL)
        s = m.session()
        threading.Thread(target=lambda: s.generate([0, 5], max_new_tokens=100000, stop_at_eos=False,
                                                   on_token=lambda t: None), daemon=True).start()
        time.sleep(0.1)
    """,
    "worker_less_model": """
        m = sibyl.Model(MODEL, worker_threads=0)
        s = m.session()
        r = s.submit_chat([{"role": "user", "content": "What is 1 + 2?"}], on_event=lambda e: None)
        m.step()
    """,
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_exit_with_everything_open(name):
    code = "import sibyl, threading, time\nMODEL = %r\n" % MODEL_DIR + textwrap.dedent(SCRIPTS[name]) + \
        "print('exiting', flush=True)\n"
    env = dict(os.environ)
    if os.environ.get("SIBYL_EXPECT_INSTALLED") != "1":
        env["PYTHONPATH"] = os.path.join(BINDING, "src")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("exiting")
    assert "Exception ignored" not in out.stderr and "Traceback" not in out.stderr, out.stderr
