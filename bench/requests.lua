-- A wrk script for the benchmarks (bench/wrk.py runs it):
--
--   wrk -t2 -c64 -d5s -s bench/requests.lua -H 'K: V' URL -- REQUESTS METHOD THREADS [EXPECT]
--
-- REQUESTS is a file with one request per line, "PATH<TAB>BODY" (BODY optional); each thread sends them
-- round robin, starting at its own offset. Every answer is checked: a status outside 200-299 counts as
-- non-2xx, a 2xx answer whose body lacks EXPECT (when given) counts as wrong. done() prints one line,
-- "WRK-JSON {...}", with the counts, the socket errors and the latency percentiles in microseconds.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local method = args[2]
  local nthreads = tonumber(args[3])
  if args[4] ~= nil and args[4] ~= "" then
    expected = args[4]
  end
  reqs = {}
  for line in io.lines(args[1]) do
    local path, body = line:match("^([^\t]*)\t?(.*)$")
    if body == "" then
      body = nil
    end
    reqs[#reqs + 1] = wrk.format(method, path, nil, body)
  end
  n = #reqs
  i = (id * math.floor(n / nthreads)) % n
  non2xx = 0
  wrong = 0
  sample = ""
end

function request()
  i = i % n + 1
  return reqs[i]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if sample == "" then
      sample = status .. " " .. string.sub(body or "", 1, 600)
    end
  elseif expected ~= nil and not string.find(body or "", expected, 1, true) then
    wrong = wrong + 1
    if sample == "" then
      sample = status .. " " .. string.sub(body or "", 1, 600)
    end
  end
end

local function quote(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local bad, wrongs, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    wrongs = wrongs + thread:get("wrong")
    if first == "" then
      first = thread:get("sample")
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "non2xx": %d, "wrong_body": %d, "connect": %d, '
      .. '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "mean_us": %.1f, "max_us": %d, "sample": %s}\n',
    summary.requests, summary.duration, bad, wrongs, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    quote(first)
  ))
end
