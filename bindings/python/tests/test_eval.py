"""Every public eval problem of the tiny-reasoner reproduced through the binding: the prompt the
chat template renders tokenizes to the reference prompt_ids, and the greedy reply's reasoning and
answer are the reference text, through the blocking chat, stream_chat and (a sample) submit/poll."""
import pytest

from conftest import expected_channels, user


def test_rendered_question_tokenizes_to_prompt_ids_and_back(model, eval_results):
    for r in eval_results:
        text = model.render_chat(user(r["question"]))
        ids = model.tokenize(text)
        assert ids == r["prompt_ids"], r["question"]
        assert model.detokenize(ids) == text
        assert model.tokenize(model.detokenize(r["output_ids"])) == r["output_ids"], r["question"]
        assert model.detokenize(r["output_ids"]) == r["output_text"]


def test_blocking_chat_reproduces_every_problem(model, eval_results):
    assert len(eval_results) == 160
    with model.session() as session:
        for r in eval_results:
            reasoning, answer = expected_channels(r)
            session.reset()
            reply = session.chat(user(r["question"]), max_new_tokens=400)
            assert (reply.reasoning, reply.answer) == (reasoning, answer), r["question"]
            assert reply.stop_reason == "eos"
            assert reply.stop_reason is __import__("sibyl").StopReason.EOS
            assert reply.generated_tokens == len(r["output_ids"])
            assert reply.reasoning_tokens + reply.answer_tokens == len(r["output_ids"])
            assert reply.prompt_tokens + reply.reused_tokens == len(r["prompt_ids"])
            assert r["key"] in reply.answer


def test_stream_chat_reproduces_every_problem(model, eval_results):
    for r in eval_results:
        reasoning, answer = expected_channels(r)
        with model.session() as session:
            pieces = {"reasoning": [], "answer": []}
            order = []
            with session.stream_chat(user(r["question"]), max_new_tokens=400) as stream:
                for channel, text in stream:
                    pieces[channel].append(text)
                    if not order or order[-1] != channel:
                        order.append(channel)
            assert ("".join(pieces["reasoning"]), "".join(pieces["answer"])) == (reasoning, answer), r["question"]
            assert order == ["reasoning", "answer"]
            assert stream.reply.stop_reason == "eos"
            assert (stream.reply.reasoning, stream.reply.answer) == (reasoning, answer)
            assert stream.reply.generated_tokens == len(r["output_ids"])


@pytest.mark.parametrize("index", range(0, 160, 16))
def test_submit_and_poll_reproduce_a_sample(model, eval_results, index):
    r = eval_results[index]
    reasoning, answer = expected_channels(r)
    with model.session() as session:
        with session.submit_chat(user(r["question"]), max_new_tokens=400) as request:
            events = []
            while not events or events[-1].type != "done":
                event = request.poll()
                if event is None:
                    request.wait(0.01)  # a game would render a frame here
                    continue
                events.append(event)
            assert request.poll() is None
            text = {"reasoning": "", "answer": ""}
            for e in events:
                if e.type == "text":
                    text[e.channel] += e.text
            tokens = [e.token for e in events if e.type == "token"]
            assert (text["reasoning"], text["answer"]) == (reasoning, answer)
            assert tokens == r["output_ids"]
            done = events[-1]
            assert done.stop_reason == "eos" and done.status == 0 and done.error is None
            reply = request.result()
            assert (reply.reasoning, reply.answer) == (reasoning, answer)
            assert reply.generated_tokens == len(r["output_ids"])
            assert reply.total_us >= reply.first_token_us > 0


def test_submit_generate_and_generate_give_the_reference_ids(model, eval_results):
    for r in eval_results[:5]:
        with model.session() as session:
            assert session.generate(r["prompt_ids"], max_new_tokens=400) == r["output_ids"]
            assert session.position == len(r["prompt_ids"]) + len(r["output_ids"])
        with model.session() as session:
            request = session.submit_generate(r["prompt_ids"], max_new_tokens=400)
            reply = request.result(timeout=30)
            assert reply.tokens == r["output_ids"]
            assert reply.stop_reason == "eos"
            request.close()
