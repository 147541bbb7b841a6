"""Session state: save -> load continues exactly like the uninterrupted session; fork; cancel of
a running request or chat ends it with the cancelled stop reason; rewind and reset."""
import pytest

import sibyl
from conftest import MODEL_DIR, expected_channels, user

SAMPLING = {"temperature": 0.9, "top_k": 40}


def test_save_then_load_continues_a_generation_exactly(model, eval_results):
    prompt = eval_results[3]["prompt_ids"]
    with model.session(seed=11) as whole:
        uninterrupted = whole.generate(prompt, max_new_tokens=50, stop_at_eos=False, **SAMPLING)
    with model.session(seed=11) as first:
        head = first.generate(prompt, max_new_tokens=20, stop_at_eos=False, **SAMPLING)
        state = first.save_state()
        assert isinstance(state, bytes) and len(state) > 1280 * first.position
        position = first.position
        tail_here = first.generate([], max_new_tokens=30, stop_at_eos=False, **SAMPLING)
    with model.session(seed=999) as second:  # another seed: the RNG comes from the state
        second.load_state(state)
        assert second.position == position
        tail_there = second.generate([], max_new_tokens=30, stop_at_eos=False, **SAMPLING)
    assert head + tail_here == uninterrupted
    assert tail_there == tail_here


def test_save_then_load_continues_a_conversation(model):
    question = user("What is 6238 + 76?")
    with model.session(seed=5) as a:
        reply = a.chat(question, **SAMPLING)
        state = a.save_state()
        follow_up = question + [reply.message(), {"role": "user", "content": "What is 12 - 7?"}]
        expected = a.chat(follow_up, **SAMPLING)
    with model.session() as b:
        b.load_state(bytearray(state))
        again = b.chat(follow_up, **SAMPLING)
    assert (again.reasoning, again.answer, again.stop_reason) == (expected.reasoning, expected.answer,
                                                                 expected.stop_reason)
    assert again.reused_tokens == expected.reused_tokens > 0


def test_load_state_refuses_foreign_bytes_and_keeps_the_session(session):
    session.append([0, 5, 6])
    with pytest.raises(sibyl.FormatError) as e:
        session.load_state(b"not a session state")
    assert e.value.status == sibyl.Status.FORMAT
    with pytest.raises(sibyl.FormatError):
        session.load_state(session.save_state()[:-10])
    assert session.position == 3
    with pytest.raises(TypeError):
        session.load_state("text")


def test_fork_continues_like_its_parent(model, eval_results):
    r = eval_results[7]
    with model.session() as parent:
        parent.append(r["prompt_ids"])
        with parent.fork() as child:
            assert child.position == parent.position
            assert child.generate([], max_new_tokens=400) == r["output_ids"]
        assert parent.generate([], max_new_tokens=400) == r["output_ids"]


def test_rewind_and_reset(model, eval_results):
    r = eval_results[0]
    with model.session() as s:
        s.generate(r["prompt_ids"], max_new_tokens=10)
        s.rewind(len(r["prompt_ids"]) - 1)
        assert s.position == len(r["prompt_ids"]) - 1
        assert s.generate(r["prompt_ids"][-1:], max_new_tokens=400) == r["output_ids"]
        s.reset()
        assert s.position == 0
        with pytest.raises(sibyl.InvalidArgumentError):
            s.rewind(5)


def test_cancel_a_request_mid_generation():
    # worker_threads=0: this thread runs every step, so "mid-generation" is exact.
    with sibyl.Model(MODEL_DIR, worker_threads=0) as model, model.session() as s:
        assert model.info.worker_threads == 0
        request = s.submit_chat(user("What is 6238 + 76?"))
        texts = []
        while len(texts) < 5:
            model.step()
            texts += [e for e in request.events() if e.type == "text"]
        request.cancel()
        reply = request.result()
        assert reply.stop_reason == sibyl.StopReason.CANCELLED
        assert 5 <= reply.generated_tokens < 40
        events = request.events()
        assert events and events[-1].type == "done" and events[-1].stop_reason == "cancelled"
        assert events[-1].error is None
        request.close()
        # The session is free again and keeps what ran.
        assert s.position > 14
        s.chat(user("What is 1 + 2?"))


def test_cancel_a_running_request_from_another_thread(model):
    import threading
    with model.session() as s:
        request = s.submit_generate([0, 5], max_new_tokens=100000, stop_at_eos=False)
        threading.Timer(0.05, request.cancel).start()
        reply = request.result(timeout=30)
        assert reply.stop_reason == "cancelled"
        assert 0 < len(reply.tokens) < 100000
        request.close()


def test_cancel_a_blocking_chat_from_its_callback(session):
    seen = []

    def on_text(channel, text):
        seen.append(text)
        if len(seen) == 3:
            session.cancel()

    reply = session.chat(user("What is 347 + 589?"), on_text=on_text)
    assert reply.stop_reason == "cancelled"
    assert 3 <= len(seen) < 10


def test_stop_from_callbacks(session, eval_results):
    reply = session.chat(user("What is 347 + 589?"), on_text=lambda channel, text: channel == "answer")
    assert reply.stop_reason == "callback" and reply.answer and len(reply.answer) < 5
    session.reset()
    tokens = session.generate(eval_results[0]["prompt_ids"], on_token=lambda t: True)
    assert tokens == eval_results[0]["output_ids"][:1]


def test_leaving_a_stream_early_cancels_it(session):
    with session.stream_chat(user("What is 347 + 589?")) as stream:
        for channel, text in stream:
            break
    assert stream.request.closed
    # The session is not busy any more.
    reply = session.chat(user("What is 2 + 2?"))
    assert reply.stop_reason == "eos"


def test_eval_reply_after_save_load_in_the_middle_of_the_prompt(model, eval_results):
    r = eval_results[20]
    reasoning, answer = expected_channels(r)
    with model.session() as a:
        a.append(r["prompt_ids"][:6], logits="none")
        state = a.save_state()
    with model.session() as b:
        b.load_state(state)
        assert b.generate(r["prompt_ids"][6:], max_new_tokens=400) == r["output_ids"]
