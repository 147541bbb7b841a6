"""Errors are exceptions (a SibylError subclass per status, with the library's message); misuse
raises and never crashes: bad paths, invalid UTF-8, closed objects, busy sessions, a closed
model under live sessions and requests."""
import pytest

import sibyl
from conftest import MODEL_DIR, user


def test_bad_path_is_an_io_error_naming_it():
    with pytest.raises(sibyl.SibylError) as e:
        sibyl.Model("/nonexistent/model/dir")
    assert type(e.value) is sibyl.IoError
    assert e.value.status == sibyl.Status.IO == 3
    assert "/nonexistent/model/dir" in e.value.message
    assert str(e.value).startswith("io: ")
    assert sibyl.error_class(3) is sibyl.IoError


def test_every_status_has_its_class():
    for status in sibyl.Status:
        if status == sibyl.Status.OK:
            continue
        cls = sibyl.error_class(status)
        assert issubclass(cls, sibyl.SibylError) and cls.status == status
        assert sibyl.status_string(status)
    assert sibyl.error_class(999) is sibyl.SibylError


def test_invalid_utf8_is_an_invalid_argument(model, session):
    with pytest.raises(sibyl.InvalidArgumentError) as e:
        model.tokenize(b"abc\xff")
    assert e.value.status == sibyl.Status.INVALID_ARGUMENT and "offset 3" in e.value.message
    with pytest.raises(sibyl.InvalidArgumentError):  # a lone surrogate (surrogateescape) is that byte
        model.tokenize("abc\udcff")
    with pytest.raises(sibyl.InvalidArgumentError):
        session.chat([{"role": "user", "content": b"\xc3("}])
    with pytest.raises(sibyl.InvalidArgumentError):
        session.submit_chat([{"role": "user", "content": "caf\udce9"}])
    assert model.tokenize("café".encode()) == model.tokenize("café")


def test_using_a_closed_session_raises(model):
    s = model.session()
    s.close()
    s.close()  # idempotent
    assert s.closed
    for call in (lambda: s.chat(user("hi")), lambda: s.generate([1]), lambda: s.position, s.save_state,
                 lambda: s.submit_chat(user("hi")), lambda: s.stream_chat(user("hi")), s.fork, s.cancel):
        with pytest.raises(sibyl.ClosedError) as e:
            call()
        assert isinstance(e.value, sibyl.InvalidArgumentError)
        assert e.value.status == sibyl.Status.INVALID_ARGUMENT


def test_closing_a_model_under_live_sessions_and_requests():
    model = sibyl.Model(MODEL_DIR, worker_threads=0)
    a, b = model.session(), model.session()
    a.chat(user("What is 1 + 2?"), max_new_tokens=5)
    request = b.submit_chat(user("What is 1 + 2?"))
    model.step()
    model.close()
    assert model.closed
    with pytest.raises(sibyl.ModelDestroyedError) as e:
        a.chat(user("What is 3 + 4?"))
    assert e.value.status == sibyl.Status.MODEL_DESTROYED
    with pytest.raises(sibyl.ModelDestroyedError):
        a.position
    with pytest.raises(sibyl.ClosedError):
        model.session()
    with pytest.raises(sibyl.ClosedError):
        model.tokenize("x")
    # The unfinished request ends with that status; its handle stays usable.
    with pytest.raises(sibyl.ModelDestroyedError):
        request.result(timeout=10)
    done = [e for e in request.events() if e.type == "done"] or [request._done]
    assert done[-1].status == sibyl.Status.MODEL_DESTROYED and done[-1].stop_reason == "error"
    request.close()
    a.close()
    b.close()


def test_a_session_serves_one_call_at_a_time():
    with sibyl.Model(MODEL_DIR, worker_threads=0) as model, model.session() as s:
        request = s.submit_chat(user("What is 1 + 2?"))  # nothing steps it: it stays unfinished
        with pytest.raises(sibyl.BusyError) as e:
            s.chat(user("What is 3 + 4?"))
        assert e.value.status == sibyl.Status.BUSY
        with pytest.raises(sibyl.BusyError):
            s.append([1, 2])
        with pytest.raises(sibyl.BusyError):
            s.submit_generate([1, 2])
        request.close(wait=True)
        assert s.chat(user("What is 3 + 4?")).stop_reason == "eos"


def test_calling_the_session_from_its_own_callback_is_busy(session):
    errors = []

    def on_text(channel, text):
        try:
            session.append([5])
        except sibyl.BusyError as e:
            errors.append(e)
        return True

    session.chat(user("What is 1 + 2?"), on_text=on_text)
    assert len(errors) == 1


def test_library_errors_have_their_classes(model, session):
    vocab = model.info.vocab_size
    with pytest.raises(sibyl.InvalidTokenError):
        session.append([vocab])
    with pytest.raises(sibyl.NoLogitsError):
        session.sample()
    with pytest.raises(sibyl.InvalidArgumentError):
        session.chat([{"role": "assistant", "content": "hi"}])
    with pytest.raises(sibyl.UnsupportedError):  # the tiny-reasoner's template has no tool calls
        session.chat(user("hi"), tools=[{"name": "wave"}])
    with pytest.raises(sibyl.ContextFullError):
        with model.session(max_context=8) as small:
            small.append(list(range(9)))


def test_python_argument_errors(model, session):
    with pytest.raises(TypeError):
        sibyl.Model(MODEL_DIR, no_such_option=1)
    with pytest.raises(ValueError):
        sibyl.Model(MODEL_DIR, backend="quantum")
    with pytest.raises(ValueError):
        sibyl.Model(MODEL_DIR, kv_cache_bytes=-1)
    with pytest.raises(TypeError):
        session.chat("just a string")
    with pytest.raises(TypeError):
        session.chat(user("hi"), no_such_option=1)
    with pytest.raises(TypeError):
        session.generate("text")
    with pytest.raises(ValueError):
        session.chat(user("hi"), max_new_tokens=-1)
    with pytest.raises(ValueError):
        session.chat([{"role": "us\0er", "content": "hi"}])
    with pytest.raises(TypeError):
        sibyl.Request()
    with pytest.raises(TypeError):
        sibyl.Grammar()


def test_grammar_errors():
    with pytest.raises(sibyl.InvalidArgumentError) as e:
        sibyl.Grammar.from_gbnf('root ::= foo')
    assert "foo" in e.value.message
    with pytest.raises(sibyl.InvalidArgumentError) as e:
        sibyl.Grammar.from_json_schema({"type": "object", "patternProperties": {}})
    assert "patternProperties" in e.value.message
    g = sibyl.Grammar.from_gbnf('root ::= "yes"')
    g.close()
    with pytest.raises(sibyl.ClosedError):
        g.prepare(None)


def test_unavailable_backend_is_a_backend_error_or_loads():
    try:
        with sibyl.Model(MODEL_DIR, backend="vulkan") as m:
            assert m.info.backend == "vulkan"
    except sibyl.BackendError as e:
        assert e.status == sibyl.Status.BACKEND and e.message
