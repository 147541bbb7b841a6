"""Callbacks: the binding keeps what C may call alive exactly as long as C may call it, a request
dropped with its callback is destroyed and its callback is never called again, exceptions in
callbacks come back to the caller, and callbacks on library threads are safe."""
import gc
import threading
import time
import weakref

import pytest

import sibyl
from conftest import MODEL_DIR, user


class Counter:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)


def test_a_collected_request_and_callback_are_never_called():
    with sibyl.Model(MODEL_DIR, worker_threads=0) as model, model.session() as s:
        counter = Counter()
        counter_ref = weakref.ref(counter)
        seen = counter.events
        request = s.submit_chat(user("What is 6238 + 76?"), on_event=counter)
        request_ref = weakref.ref(request)
        model.step()  # some events arrive
        before = len(seen)
        assert before > 0
        del request, counter
        gc.collect()
        assert request_ref() is None and counter_ref() is None
        for _ in range(200):  # drain: whatever the scheduler still holds, nothing calls back
            model.step()
        assert len(seen) == before
        s.chat(user("What is 1 + 1?"))  # the session was freed by the cancel


def test_dropping_requests_while_the_worker_calls_back():
    with sibyl.Model(MODEL_DIR) as model:
        sessions = [model.session() for _ in range(4)]
        calls = []
        for round_ in range(6):
            before = len(calls)
            requests = [s.submit_chat(user("What is %d + 589?" % (100 + i + round_)),
                                      on_event=lambda e, calls=calls: calls.append(e.type))
                        for i, s in enumerate(sessions)]
            deadline = time.monotonic() + 10
            while len(calls) == before and time.monotonic() < deadline:  # the worker is calling back
                time.sleep(0.0005)
            assert len(calls) > before
            time.sleep(0.001 * round_)
            del requests  # collected at once, while the worker may be inside a callback
            gc.collect()
            after = len(calls)
            for s in sessions:
                for _ in range(1000):
                    try:
                        s.chat(user("What is 2 + 2?"), max_new_tokens=1)
                        break
                    except sibyl.BusyError:  # the cancel lands at the next step
                        time.sleep(0.001)
                else:
                    pytest.fail("the session stayed busy")
            assert len(calls) == after  # destroyed requests never call back
        for s in sessions:
            s.close()


def test_on_event_runs_on_the_worker_and_gives_the_whole_reply(model):
    threads = set()
    texts = {"reasoning": [], "answer": []}

    def on_event(e):
        threads.add(threading.get_ident())
        if e.type == "text":
            texts[e.channel].append(e.text)

    with model.session() as s:
        request = s.submit_chat(user("What is 347 + 589?"), on_event=on_event)
        reply = request.result(timeout=30)
        assert request.poll() is None  # events went to the callback
        request.close()
    assert reply.answer == "".join(texts["answer"]) == "347 + 589 = 936."
    assert reply.reasoning == "".join(texts["reasoning"])
    assert threading.get_ident() not in threads


def test_an_exception_in_on_event_cancels_and_is_raised(model):
    def on_event(e):
        if e.type == "text":
            raise RuntimeError("boom")

    with model.session() as s:
        request = s.submit_chat(user("What is 347 + 589?"), on_event=on_event)
        with pytest.raises(RuntimeError, match="boom"):
            request.result(timeout=30)
        request.close(wait=True)
        assert s.chat(user("What is 1 + 2?")).stop_reason == "eos"


def test_an_exception_in_on_text_or_on_token_is_raised_and_the_session_stays_usable(session, eval_results):
    def on_text(channel, text):
        raise KeyError("from on_text")

    with pytest.raises(KeyError, match="from on_text"):
        session.chat(user("What is 347 + 589?"), on_text=on_text)
    with pytest.raises(ZeroDivisionError):
        session.generate(eval_results[0]["prompt_ids"], on_token=lambda t: 1 / 0)
    session.reset()
    assert session.chat(user("What is 347 + 589?")).answer == "347 + 589 = 936."


def test_closing_a_request_from_its_own_callback(model):
    holder = {}
    done = threading.Event()

    def on_event(e):
        holder["request"].close()  # destroys from inside the callback: allowed, never called again
        holder["n"] = holder.get("n", 0) + 1
        done.set()

    with model.session() as s:
        holder["request"] = s.submit_chat(user("What is 347 + 589?"), on_event=on_event)
        assert done.wait(10)
        time.sleep(0.05)
        assert holder["n"] == 1
        assert holder["request"].closed
        for _ in range(1000):
            try:
                s.chat(user("What is 1 + 2?"), max_new_tokens=1)
                break
            except sibyl.BusyError:
                time.sleep(0.001)


def test_closing_a_session_from_its_chat_callback(model):
    s = model.session()

    def on_text(channel, text):
        s.close()  # deferred: the running chat is cancelled, the session destroyed after it

    reply = s.chat(user("What is 347 + 589?"), on_text=on_text)
    assert reply.stop_reason == "cancelled"
    assert s.closed
    with pytest.raises(sibyl.ClosedError):
        s.chat(user("hi"))


def test_two_sessions_on_two_threads(model, eval_results):
    results = {}

    def run(i):
        with model.session() as s:
            results[i] = [s.chat(user(eval_results[k]["question"])).answer for k in range(i, 40, 4)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert len(results[i]) == 10
        for answer, k in zip(results[i], range(i, 40, 4)):
            assert eval_results[k]["key"] in answer


def test_one_session_on_two_threads_is_busy(session):
    inside, release = threading.Event(), threading.Event()

    def on_text(channel, text):
        inside.set()
        release.wait(10)
        return True

    t = threading.Thread(target=lambda: session.chat(user("What is 1 + 2?"), on_text=on_text))
    t.start()
    assert inside.wait(10)
    with pytest.raises(sibyl.BusyError):
        session.chat(user("What is 3 + 4?"))
    release.set()
    t.join()


def test_log_callback_receives_messages_from_any_thread(model):
    messages = []
    sibyl.set_log_callback(lambda level, message: messages.append((level, message)), "debug")
    try:
        with sibyl.Model(MODEL_DIR, worker_threads=2) as m, m.session() as s:
            s.chat(user("What is 1 + 2?"))
    finally:
        sibyl.set_log_callback(None)
    assert all(isinstance(level, str) and isinstance(text, str) for level, text in messages)
    with pytest.raises(TypeError):
        sibyl.set_log_callback(42)
