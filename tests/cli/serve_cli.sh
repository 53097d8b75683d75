# smelt serve on loopback (127.0.0.1 only; every loop below is bounded): health, models, metrics;
# greedy completions equal `smelt generate`; streaming equals the non-streamed text; echo
# log-probabilities agree with the logprob of the same token generated; chat completions;
# malformed JSON, unknown fields, too-long prompts, oversized bodies, wrong model, wrong method get
# 4xx with an OpenAI error body; a client that disconnects mid-stream frees its slot; 200
# concurrent streaming clients all complete and leave no slot or block behind; and the benchmark
# stage's `target:` against this server gives a TTFT p50 within 20% of the same workload in
# process plus the measured HTTP overhead.
source "$(dirname "$0")/lib.sh"
source "$SMELT_SOURCE_DIR/tests/lib_shared.sh"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
H=${SMELT_DATA_HELPER:?SMELT_DATA_HELPER must point to the data_helper binary}
"$H" model rand 261 1 64 2 || fail "random model"
"$H" model big 261 2 192 4 || fail "random model (TTFT comparison)"

SERVER_PID=
stop_server() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi; SERVER_PID=; }
trap stop_server EXIT
start_server() { # MODEL [options]: starts smelt serve on a free port, sets PORT
  rm -f port.txt
  "$SMELT" serve "$@" --tokenizer builtin:bytes --port 0 --port-file port.txt > serve.log 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do [ -s port.txt ] && break; sleep 0.1; done
  [ -s port.txt ] || fail "the server did not start: $(cat serve.log)"
  PORT=$(cat port.txt)
  expect_contains "$(cat serve.log)" "http://127.0.0.1:$PORT" "bound to 127.0.0.1 by default"
}

start_server rand --max-body-kb 64 --max-tokens 4000 --max-seqs 16 --chat-template chatml
export PORT
python3 - <<'PY' || fail "HTTP API"
import json, os, socket, http.client, subprocess, math

port = int(os.environ["PORT"])
def call(method, path, body=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, text

st, t = call("GET", "/health"); assert st == 200 and json.loads(t)["status"] == "ok", t
st, t = call("GET", "/v1/models"); assert st == 200 and json.loads(t)["data"][0]["id"] == "rand", t

# greedy completion == smelt generate (BOS + prompt, temperature 0) on the plain KV-cache path.
# Random bytes need not be UTF-8: both sides replace invalid bytes by U+FFFD (in different counts),
# so the texts are compared without them; generate stops at EOS, the server ignores it.
st, t = call("POST", "/v1/completions", {"prompt": "Once upon", "max_tokens": 12, "temperature": 0, "ignore_eos": True})
assert st == 200, t
out = json.loads(t)
text = out["choices"][0]["text"]
gen = subprocess.run([os.environ["SMELT_BIN"], "generate", "rand", "--tokenizer", "builtin:bytes", "--prompt",
                      "Once upon", "--max-tokens", "12", "--temperature", "0"], capture_output=True)
assert gen.returncode == 0, gen.stderr
ref = gen.stdout[:-1].decode("utf-8", "replace")
assert "Once upon" in ref, ref  # generate prints BOS's text first
clean = lambda x: x.replace("\ufffd", "")
ref_c, text_c = clean(ref.split("Once upon", 1)[1]), clean(text)
assert text_c.startswith(ref_c) and (len(ref_c) > 0 or "Once upon" in ref), (text, ref)
assert out["usage"]["completion_tokens"] == 12 and out["choices"][0]["finish_reason"] == "length", out

# streaming gives the same text, chunk by chunk, then [DONE]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
c.request("POST", "/v1/completions", json.dumps({"prompt": "Once upon", "max_tokens": 12, "temperature": 0,
          "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}))
r = c.getresponse(); assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
body = r.read().decode(); c.close()
events = [l[6:] for l in body.split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-3:]
chunks = [json.loads(e) for e in events[:-1]]
assert "".join(ch["choices"][0]["text"] for ch in chunks if ch["choices"]) == text
assert chunks[-1]["usage"]["completion_tokens"] == 12

# echo + logprobs (how a ranker reads P(yes) at the answer): the log-probability echoed for a
# prompt token equals the one reported when the same token was generated. Tolerance: both come
# from the engine with other batch shapes; its logits agree within 2 eps (L (2H+Q+I+D+T) + H)
# max|logit| (test_engine), about 2e-4 x 3 here, doubled through the log-sum-exp: 1e-3.
checked = 0
for start in range(30):
    P = [1, 65 + start, 66, 67]
    st, t = call("POST", "/v1/completions", {"prompt": P, "max_tokens": 1, "temperature": 0, "logprobs": 1})
    g = json.loads(t)["choices"][0]["logprobs"]
    piece, lp = g["tokens"][0], g["token_logprobs"][0]
    if len(piece) != 1 or not 32 <= ord(piece) < 127: continue  # a byte we can name by its id
    st, t = call("POST", "/v1/completions", {"prompt": P + [ord(piece)], "max_tokens": 1, "temperature": 0,
                 "echo": True, "logprobs": 0})
    e = json.loads(t)["choices"][0]["logprobs"]
    assert e["token_logprobs"][0] is None and len(e["token_logprobs"]) == 6 and e["tokens"][4] == piece, e
    assert abs(e["token_logprobs"][4] - lp) < 1e-3, (e["token_logprobs"][4], lp)
    checked += 1
    if checked == 3: break
assert checked > 0, "no printable greedy token in 30 prompts"

# chat completions (ChatML forced: builtin:bytes has no template; its markers are byte-tokenized)
st, t = call("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
             "logprobs": True, "top_logprobs": 2})
ch = json.loads(t)
assert st == 200 and ch["object"] == "chat.completion" and ch["choices"][0]["message"]["role"] == "assistant", t
assert len(ch["choices"][0]["logprobs"]["content"]) == ch["usage"]["completion_tokens"]

# errors: status, OpenAI error body, the field at fault
def err(status, method, path, body=None, raw=None, param=None, code=None):
    st, t = call(method, path, body, raw)
    assert st == status, (status, st, t)
    e = json.loads(t)["error"]
    assert e["message"] and e["type"], t
    if param: assert e["param"] == param, t
    if code: assert e["code"] == code, t
err(400, "POST", "/v1/completions", raw='{"prompt": ')
err(400, "POST", "/v1/completions", {"prompt": "x", "bogus": 1}, param="bogus")
err(400, "POST", "/v1/completions", {"prompt": "x", "temperature": "hot"}, param="temperature")
err(400, "POST", "/v1/completions", {"prompt": "x", "n": 2}, param="n")
err(400, "POST", "/v1/completions", {"prompt": [5] * 5000}, param="prompt", code="context_length_exceeded")
err(400, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 4001}, param="max_tokens")
err(400, "POST", "/v1/completions", {"prompt": [300]}, param="prompt")
err(413, "POST", "/v1/completions", raw='{"prompt": "' + "a" * 70000 + '"}')
err(404, "POST", "/v1/completions", {"prompt": "x", "model": "gpt-4"}, param="model", code="model_not_found")
err(404, "GET", "/v2/nothing")
err(405, "GET", "/v1/completions")
err(400, "POST", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, param="messages")

# a client that disconnects mid-stream: its request is cancelled and its slot freed. The server
# generates without waiting for the client, so the stream is made long (4000 tokens, each step's
# attention longer than the last: about a second on a quiet machine) against the few ms the
# server takes to see the closed socket, and the check is that it did not run to its end.
def metrics():
    st, t = call("GET", "/metrics")
    return {l.split(" ")[0]: float(l.split(" ")[1]) for l in t.split("\n") if l and not l.startswith("#")}
gen0 = metrics()["smelt_generation_tokens_total"]
s = socket.create_connection(("127.0.0.1", port))
body = json.dumps({"prompt": "x", "max_tokens": 4000, "ignore_eos": True, "stream": True})
s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body)).encode())
got = b""
for _ in range(100):  # the headers, then the first chunk
    got += s.recv(4096)
    if b"data:" in got: break
assert b"data:" in got, got
s.close()
import time
for _ in range(300):
    m = metrics()
    if m["smelt_requests_active"] == 0 and m["smelt_requests_running"] == 0: break
    time.sleep(0.1)
assert m["smelt_requests_active"] == 0 and m["smelt_requests_running"] == 0, m
assert m["smelt_generation_tokens_total"] - gen0 < 4000, (gen0, m)  # cancelled before its end
print("ok: HTTP API, errors, disconnect")
PY
pass "serve: completions equal smelt generate, streaming, echo logprobs, chat, 4xx bodies, disconnect frees the slot"

python3 - <<'PY' || fail "200 concurrent streaming clients"
import json, os, http.client, threading, time
port = int(os.environ["PORT"])
N, results = 200, []
lock = threading.Lock()
def client(i):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        c.request("POST", "/v1/completions", json.dumps({"prompt": [1 + i % 200, 2, 3], "max_tokens": 8, "ignore_eos": True,
                  "stream": True, "temperature": 0.7, "seed": i, "stream_options": {"include_usage": True}}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read().decode()  # strict UTF-8: the server replaces invalid bytes
        c.close()
        events = [l[6:] for l in body.split("\n") if l.startswith("data: ")]
        ok = r.status == 200 and events[-1] == "[DONE]" and json.loads(events[-2])["usage"]["completion_tokens"] == 8
    except Exception as e:
        ok = False
    with lock: results.append(ok)
threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
for t in threads: t.start()
for t in threads: t.join(timeout=600)
assert len(results) == N and all(results), "%d of %d clients failed" % (results.count(False) + N - len(results), N)
# a client has its whole answer a moment before the server's thread closes the connection and
# lets the request go: wait for that (bounded), then nothing may be left
for _ in range(300):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60); c.request("GET", "/metrics")
    m = {l.split(" ")[0]: float(l.split(" ")[1]) for l in c.getresponse().read().decode().split("\n") if l and l[0] != "#"}
    c.close()
    if m["smelt_requests_active"] == 0: break
    time.sleep(0.1)
assert m["smelt_requests_active"] == 0 and m["smelt_requests_running"] == 0 and m["smelt_requests_waiting"] == 0, m
assert m['smelt_kv_blocks{state="free"}'] + m['smelt_kv_blocks{state="cached"}'] == m['smelt_kv_blocks{state="total"}'], m
print("ok: %d concurrent streams" % N)
PY
pass "serve: 200 concurrent streaming clients complete, no slot or KV block leaked"
stop_server

# a real model: stories260K (llama2.c) through HTTP reproduces the greedy text that
# ../shared/README.md quotes (an independent decoder's output), streamed and not
if shared_file S260 models/stories260K/stories260K.bin "the stories260K part" &&
   shared_file TOK512 models/stories260K/tok512.bin "the stories260K part" &&
   shared_file SREADME README.md "the stories260K part"; then
  want=$(grep -A1 'Greedy (temperature 0) decoding from BOS' "$SREADME" | tail -n 1 | sed -n 's/^[^`]*`\([^`]*\)`.*$/\1/p')
  [ -n "$want" ] || fail "no quoted greedy text in $SREADME"
  rm -f port.txt
  "$SMELT" serve "$S260" --tokenizer "$TOK512" --port 0 --port-file port.txt > serve260.log 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do [ -s port.txt ] && break; sleep 0.1; done
  [ -s port.txt ] || fail "stories260K server: $(cat serve260.log)"
  WANT=$want PORT=$(cat port.txt) python3 - <<'PY' || fail "stories260K through HTTP"
import http.client, json, os
port, want = int(os.environ["PORT"]), os.environ["WANT"]
def post(body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions", json.dumps(body)); r = c.getresponse(); t = r.read().decode(); c.close()
    assert r.status == 200, t
    return t
text = json.loads(post({"prompt": "", "max_tokens": 60, "temperature": 0}))["choices"][0]["text"]
assert text.lstrip().startswith(want[:120]), (text, want[:120])  # sentencepiece: the first piece has its space
events = [l[6:] for l in post({"prompt": "", "max_tokens": 60, "temperature": 0, "stream": True}).split("\n") if l.startswith("data: ")]
assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == text
print("ok: stories260K greedy text through HTTP: %r" % text[:60])
PY
  stop_server
  pass "serve: stories260K through HTTP reproduces README.md's greedy text"
fi

# SmolLM2-135M-Instruct (GGUF, its own tokenizer and ChatML template with the default system
# message) through /v1/chat/completions answers as transformers does with the same template
# (../shared/README.md: "The capital of France is Paris.<|im_end|>"): the end-of-turn token stops it
if shared_file gguf models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf "the SmolLM2 part"; then
  rm -f port.txt
  "$SMELT" serve "$gguf" --port 0 --port-file port.txt > serve-smol.log 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do [ -s port.txt ] && break; sleep 0.1; done
  [ -s port.txt ] || fail "SmolLM2 server: $(cat serve-smol.log)"
  expect_contains "$(cat serve-smol.log)" "chat template ChatML" "the GGUF file's template is used"
  PORT=$(cat port.txt) python3 - <<'PY' || fail "SmolLM2 chat through HTTP"
import http.client, json, os
c = http.client.HTTPConnection("127.0.0.1", int(os.environ["PORT"]), timeout=300)
c.request("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "What is the capital of France?"}],
          "max_tokens": 16, "temperature": 0}))
r = c.getresponse(); out = json.loads(r.read())
assert r.status == 200, out
ch = out["choices"][0]
assert ch["message"]["content"] == "The capital of France is Paris." and ch["finish_reason"] == "stop", out
print("ok: SmolLM2 chat: %r" % ch["message"]["content"])
PY
  stop_server
  pass "serve: SmolLM2 (GGUF) chat completion equals transformers' with the same template"
fi

# TTFT through HTTP vs in process on the same workload (a quiet load: no queueing). One thread for
# the model on both sides leaves a core to the client and the server's connection threads. Five
# pairs of runs, each HTTP run right after its in-process twin, so that a change of the machine's
# load between pairs moves both alike; the median of the five ratios HTTP / (in process + HTTP
# overhead) must be within 20% of 1. On a machine loaded beyond twice its cores (other jobs take
# the CPU in bursts of seconds) the figures are printed but not asserted, and the test says so.
export OMP_NUM_THREADS=1
start_server big
code=$(python3 -c "
import http.client, json
c = http.client.HTTPConnection('127.0.0.1', $PORT, timeout=60)
c.request('POST', '/v1/chat/completions', json.dumps({'messages': [{'role': 'user', 'content': 'hi'}]}))
r = c.getresponse(); print(r.status, json.loads(r.read())['error']['param'])")
expect_eq "$code" "400 messages" "a model without a chat template refuses chat requests"
ttft_recipe() { # ATTEMPT: new seeds each attempt (the server's prefix cache keeps earlier prompts)
python3 - "$PORT" "$1" > ttft.yaml <<'PY'
import sys
w = "workload: {kind: ranking, candidates: 4, prompts: {context_tokens: 384}, requests: 8, rate: 4, arrival: fixed, seed: %d}"
print("smelt: 1\nstages:")
for i in range(1, 6):  # local1, http1, local2, http2, ...: each after the previous one
    seed = 10 * int(sys.argv[2]) + i
    print("  local%d:\n    kind: benchmark\n    model: ./big\n    %s" % (i, w % seed) + ("\n    needs: [http%d]" % (i - 1) if i > 1 else ""))
    print("  http%d:\n    kind: benchmark\n    target: http://127.0.0.1:%s\n    needs: [local%d]\n    %s" % (i, sys.argv[1], i, w % seed))
PY
}
ok=0
load_max=$(cut -d' ' -f1 /proc/loadavg)
for attempt in 1 2; do
  ttft_recipe $attempt
  SMELT_STORE=$WORK/store-t$attempt "$SMELT" run ttft.yaml > t$attempt.out 2>&1 || fail "TTFT runs: $(cat t$attempt.out)"
  load_max=$(python3 -c "print(max($load_max, $(cut -d' ' -f1 /proc/loadavg)))")
  args=()
  for i in 1 2 3 4 5; do
    expect_eq "$(SMELT_STORE=$WORK/store-t$attempt q "SELECT value FROM latest_metrics WHERE stage = 'http$i' AND key = 'errors'")" 0 \
      "no failed HTTP request"
    args+=($(SMELT_STORE=$WORK/store-t$attempt q "SELECT value FROM latest_metrics WHERE stage IN ('local$i', 'http$i') AND key IN
           ('ttft_ms_p50', 'http_overhead_ms') ORDER BY stage DESC, key DESC"))
  done
  if python3 - "${args[@]}" <<'PY'
import statistics, sys
v = list(map(float, sys.argv[1:]))  # per pair: local ttft, http ttft, http overhead
pairs = [(v[i], v[i + 1], v[i + 2]) for i in range(0, len(v), 3)]
ratios = [h / (l + o) for l, h, o in pairs]
r = statistics.median(ratios)
print("TTFT p50 pairs (in process, HTTP, overhead) ms: %s; HTTP / (in process + overhead): median %.3f of %s"
      % ([tuple(round(x, 2) for x in p) for p in pairs], r, [round(x, 3) for x in ratios]))
sys.exit(0 if abs(r - 1) <= 0.2 else 1)
PY
  then ok=1; break; fi
done
if [ $ok = 0 ]; then
  if python3 -c "import os, sys; sys.exit(0 if $load_max > 2 * os.cpu_count() else 1)"; then
    echo "TTFT comparison not asserted: the 1-minute load reached $load_max on $(getconf _NPROCESSORS_ONLN) cores"
  else
    fail "TTFT p50 through HTTP is not within 20% of in process + HTTP overhead (load at most $load_max)"
  fi
else
  pass "benchmark target: TTFT p50 through HTTP within 20% of in process + HTTP overhead"
fi
