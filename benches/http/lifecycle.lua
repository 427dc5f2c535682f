-- wrk script: the lifecycle mix. Each connection cycles through
--   open (POST /v1/conversations) -> consumer message -> close by the consumer
-- with conversation ids that are never reused (a run prefix, wrk thread id, a counter).
-- The same script drives the echo floor (examples/http_echo.rs), which serves the
-- same paths, so both runs send identical requests.

local thread_counter = 0

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("tid", thread_counter)
end

-- wrk keeps one Lua state per thread, shared by that thread's connections, which each
-- have one request in flight: a consumer message for a conversation opened on another
-- connection could overtake its open. So cycle t sends open(t), then a message to the
-- conversation opened LAG cycles earlier, then closes the one opened 2*LAG earlier:
-- LAG * 3 requests later, every earlier open has long been answered (with 64, a slow
-- open was overtaken now and then: a few 404s and 409s per run).
local LAG = 256
local step = 0
local t = 0

-- A prefix from the command line (`wrk ... -- PREFIX`) keeps ids unique across runs
-- against one server.
local prefix = "w"

function init(args)
  if args[1] then prefix = args[1] end
end

local function cid(k)
  return string.format("%s%d-%d", prefix, tid, k)
end

-- wrk builds one request on its first thread to check it and never sends it: that
-- call must not use up a conversation id (the open of "w1-1" was lost that way, and its
-- message and close answered 404).
local checked = false

function request()
  if not checked then
    checked = true
    if tid == 1 then
      return wrk.format("GET", "/v1/never-sent")
    end
  end
  local body, path
  if step == 1 and t > LAG then
    path = "/v1/conversations/" .. cid(t - LAG) .. "/messages"
    body = '{"from":"consumer"}'
  elseif step == 2 and t > 2 * LAG then
    path = "/v1/conversations/" .. cid(t - 2 * LAG) .. "/close"
    body = '{"by":"consumer"}'
  else
    if step == 0 then t = t + 1 end
    local id = step == 0 and cid(t) or string.format("%s%d-x%d-%d", prefix, tid, step, t)
    path = "/v1/conversations"
    body = string.format('{"conversation_id":"%s","consumer_id":"u%s","skill":"general"}', id, id)
  end
  step = (step + 1) % 3
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("requests %d\n", summary.requests))
  io.write(string.format("errors_non2xx %d\n", summary.errors.status))
  io.write(string.format("latency_p50_ms %.3f\n", latency:percentile(50) / 1000))
  io.write(string.format("latency_p99_ms %.3f\n", latency:percentile(99) / 1000))
  io.write(string.format("requests_per_sec %.0f\n", summary.requests / (summary.duration / 1e6)))
end
