"""Automatic pipelining on a real Redis: many greenlets' script calls go out together, each
caller gets its own answer or error, and a Redis that lost its scripts is taught them again."""

import gevent
import pytest
import redis

from feed.pipeliner import Pipeliner

# Adds ARGV[1] to a key and answers the sum; a negative amount is refused.
ADD = """
if tonumber(ARGV[1]) < 0 then
  return redis.error_reply('negative amount')
end
return redis.call('incrby', KEYS[1], ARGV[1])
"""


@pytest.fixture
def client(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


def counted(client: redis.Redis) -> list[int]:
    """Count the pipelines the client sends: one entry per round trip's number of commands."""
    sent: list[int] = []
    pipeline = client.pipeline

    def counting(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        def execute_counted(*a, **k):
            sent.append(len(pipe.command_stack))
            return execute(*a, **k)

        pipe.execute = execute_counted
        return pipe

    client.pipeline = counting
    return sent


def calls(pipeliner: Pipeliner, script, amounts: list[int]) -> list:
    """Call the script from one greenlet per amount at once; return each answer or error."""

    def one(n: int, amount: int):
        try:
            return pipeliner.call(script, [f"key:{n}"], [amount])
        except redis.RedisError as error:
            return error

    greenlets = [gevent.spawn(one, n, amount) for n, amount in enumerate(amounts)]
    gevent.joinall(greenlets, raise_error=True)
    return [g.value for g in greenlets]


def test_many_greenlets_calls_share_one_pipeline_and_each_gets_its_answer(client):
    script = client.register_script(ADD)
    client.script_load(ADD)
    sent = counted(client)
    pipeliner = Pipeliner(client)
    assert calls(pipeliner, script, list(range(1, 201))) == list(range(1, 201))
    assert sent == [200]
    assert calls(pipeliner, script, [5, 5]) == [6, 7]
    assert int(client.get("key:0")) == 6


def test_an_error_is_its_callers_alone(client):
    script = client.register_script(ADD)
    client.script_load(ADD)
    answers = calls(Pipeliner(client), script, [3, -1, 4])
    assert answers[0] == 3 and answers[2] == 4
    assert isinstance(answers[1], redis.ResponseError)
    assert "negative amount" in str(answers[1])
    assert client.get("key:1") is None


def test_scripts_redis_lost_are_loaded_again_once(client):
    script = client.register_script(ADD)
    client.script_flush()
    sent = counted(client)
    assert calls(Pipeliner(client), script, [1, 2, 3]) == [1, 2, 3]
    # The first pipeline met NOSCRIPT everywhere; the script loaded once, and sent again.
    assert sent == [3, 3]
    assert client.script_exists(script.sha) == [True]


def test_a_redis_that_is_gone_fails_every_caller_and_the_next_calls_try_again(fresh_redis):
    client = redis.Redis.from_url(fresh_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    script = client.register_script(ADD)
    pipeliner = Pipeliner(client)
    assert calls(pipeliner, script, [1]) == [1]
    fresh_redis.stop()
    answers = calls(pipeliner, script, [1, 1, 1])
    assert all(isinstance(answer, redis.ConnectionError) for answer in answers), answers
    fresh_redis.start()
    # Its data is gone with it (no persistence): counting starts again.
    assert calls(pipeliner, script, [2]) == [2]
    client.close()


def test_many_calls_of_one_greenlet_go_in_one_pipeline(client):
    script = client.register_script(ADD)
    client.script_load(ADD)
    sent = counted(client)
    answers = Pipeliner(client).call_many(script, [([f"key:{n}"], [n + 1]) for n in range(5)])
    assert answers == [1, 2, 3, 4, 5]
    assert sent == [5]
