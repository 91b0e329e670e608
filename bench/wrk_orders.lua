-- wrk script for POST /api/orders/execute (bench/bench_pipeline.py runs it; one wrk thread: -t1).
--
--   wrk -t1 -c64 -d600s -s bench/wrk_orders.lua http://127.0.0.1:PORT/api/orders/execute -- N TAG KEYS
--
-- Sends valid orders (four bodies in rotation) until N answers arrived, then stops wrk at once (wrk itself
-- only knows durations). With KEYS=1 each request carries an Idempotency-Key "TAG-<thread>-<n>-<send µs>":
-- the ingress derives the order id from it and copies it into OrderRequested, so the bench reads every
-- order's client send time back from the event log. Prints one line "WRKJSON {...}" at the end.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
int getpid(void);
long syscall(long number, ...);
]]

local CLOCK_REALTIME = 0
local SYS_TGKILL = 234 -- x86_64
local SIGINT = 2
local ts = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_REALTIME, ts)
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local bodies = {
  '{"baseToken":"SOL","quoteToken":"USDC","side":"sell","amountIn":1.5,"slippageBps":100}',
  '{"baseToken":"SOL","quoteToken":"USDC","side":"buy","amountIn":150,"slippageBps":100}',
  '{"baseToken":"ETH","quoteToken":"USDT","side":"sell","amountIn":0.5,"slippageBps":100}',
  '{"baseToken":"ETH","quoteToken":"USDT","side":"buy","amountIn":1000,"slippageBps":100}',
}

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  quota = tonumber(args[1])
  tag = args[2]
  use_keys = args[3] == "1"
  sent, answered, created, other = 0, 0, 0, 0
  first_us, last_us = 0, 0
end

function request()
  sent = sent + 1
  local headers = { ["Content-Type"] = "application/json" }
  local at = now_us()
  if first_us == 0 then first_us = at end
  if use_keys then
    headers["Idempotency-Key"] = string.format("%s-%d-%d-%.0f", tag, id, sent, at)
  end
  return wrk.format("POST", nil, headers, bodies[sent % #bodies + 1])
end

function response(status, headers, body)
  answered = answered + 1
  if status == 201 then created = created + 1 else other = other + 1 end
  last_us = now_us()
  if answered == quota then
    wrk.thread:stop()
    -- wake wrk's main thread (its tid is the pid), which otherwise sleeps for the whole -d duration
    local pid = ffi.C.getpid()
    ffi.C.syscall(ffi.cast("long", SYS_TGKILL), ffi.cast("long", pid), ffi.cast("long", pid),
      ffi.cast("long", SIGINT))
  end
end

function done(summary, latency, requests)
  local total = { sent = 0, answered = 0, created = 0, other = 0 }
  local first, last = nil, 0
  for _, t in ipairs(threads) do
    for k, _ in pairs(total) do total[k] = total[k] + t:get(k) end
    local f, l = t:get("first_us"), t:get("last_us")
    if f > 0 and (first == nil or f < first) then first = f end
    if l > last then last = l end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"sent":%d,"answered":%d,"created":%d,"other":%d,"first_us":%.0f,"last_us":%.0f,' ..
    '"wrk_requests":%d,"wrk_duration_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    total.sent, total.answered, total.created, total.other, first or 0, last,
    summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
