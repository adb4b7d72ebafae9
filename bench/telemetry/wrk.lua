-- wrk script for bench/telemetry.py: the telemetry API under load, bounded in count and time.
--
--   wrk -t T -c C -d Ds -s wrk.lua URL -- MODE COUNT T
--
-- MODE: "sensors" (GET /api/sensors), "one" (POST /api/readings, one reading as JSON) or
-- "batch" (POST /api/readings, 1,000 readings as NDJSON). Every reading POSTed is new (each wrk
-- thread has its own sensor name and counts its seqs up), so each one is really stored. Each
-- thread stops after COUNT / T answers and prints "stopped"; the harness then sends SIGINT,
-- which ends wrk's run at once (-d bounds the time). wrk's own duration is its whole run, start
-- and end included, so the rate is computed here: answers / (the last answer's time - the
-- first request's), on CLOCK_MONOTONIC through LuaJIT's ffi. done() prints one JSON line.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bothways_timespec;
int clock_gettime(int clock, bothways_timespec *now);
]])
local CLOCK_MONOTONIC = 1
local stamp = ffi.new("bothways_timespec")
local function monotonic()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, stamp)
  return tonumber(stamp.tv_sec) + tonumber(stamp.tv_nsec) * 1e-9
end

local BATCH = 1000
local T0 = 1700000000.0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("number", #threads)
end

function init(args)
  mode = args[1]
  share = math.ceil(tonumber(args[2]) / tonumber(args[3]))
  sensor = "wrk" .. number
  sent = 0 -- requests made
  answered = 0 -- answers read
  good = 0 -- of which 200
  first = 0
  last = 0
  if mode == "sensors" then
    fixed = wrk.format("GET", "/api/sensors")
  elseif mode ~= "one" and mode ~= "batch" then
    error("unknown mode " .. tostring(mode))
  end
end

local function reading(seq)
  return string.format('{"sensor":"%s","seq":%d,"t":%.1f,"celsius":%.2f}', sensor, seq, T0 + seq, 20 + seq % 7)
end

function request()
  if first == 0 then
    first = monotonic()
  end
  sent = sent + 1
  if mode == "sensors" then
    return fixed
  elseif mode == "one" then
    return wrk.format("POST", "/api/readings", { ["Content-Type"] = "application/json" }, reading(sent))
  end
  local lines = {}
  local base = sent * BATCH
  for i = 1, BATCH do
    lines[i] = reading(base + i)
  end
  lines[BATCH + 1] = ""
  local body = table.concat(lines, "\n")
  return wrk.format("POST", "/api/readings", { ["Content-Type"] = "application/x-ndjson" }, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status == 200 then
    good = good + 1
  end
  last = monotonic()
  if answered == share then
    io.write("stopped\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local start, stop, answers, ok = math.huge, 0, 0, 0
  for _, thread in ipairs(threads) do
    local first_ = thread:get("first")
    if first_ > 0 and first_ < start then
      start = first_
    end
    stop = math.max(stop, thread:get("last"))
    answers = answers + thread:get("answered")
    ok = ok + thread:get("good")
  end
  local e = summary.errors
  io.write(
    string.format(
      '{"answers":%d,"ok":%d,"seconds":%.6f,"p50_us":%d,"p99_us":%d,"max_us":%d,'
        .. '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
      answers,
      ok,
      stop > start and stop - start or 0,
      latency:percentile(50),
      latency:percentile(99),
      latency.max,
      e.connect,
      e.read,
      e.write,
      e.status,
      e.timeout
    )
  )
  io.flush()
end
