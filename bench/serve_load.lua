-- POST requests for wrk, cycled per thread, each thread from its own offset:
--     wrk -t1 -c1 -d10s --latency -s bench/serve_load.lua http://host:port -- requests.tsv
-- Each line of requests.tsv is "<path>\t<json body>". All requests are formatted once in
-- init(), so request() costs one table read and wrk stays far from being the limit.
-- done() prints one line "WRK_JSON {...}" with the counts and latency percentiles (us).

local reqs = {}
local n = 0
local threads = 0

function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for line in io.lines(args[1]) do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    if path then
      reqs[#reqs + 1] = wrk.format("POST", path, headers, body)
    end
  end
  if #reqs == 0 then
    error("no requests in " .. args[1] .. "; each line must be <path><TAB><json body>")
  end
  n = (offset or 0) % #reqs
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, ' ..
    '"max_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
