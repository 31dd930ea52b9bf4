-- wrk script of bench/http_load.py. Arguments after `--`:
--   get                                   GET the URL as given
--   same <prefix file> <suffix file> <content type> <tag>
--                                         POST prefix .. tag .. suffix, every time the same
--   new  <prefix file> <suffix file> <content type> <run>
--                                         POST prefix .. tag .. suffix with a tag unique to
--                                         each request: <run> (8 characters), the thread, a counter
-- The tag fills a JPEG comment segment (bench/http_load.py makes the prefix end with its
-- header), so every "new" body is a different photo. Each answer is counted by its status
-- code and the "status" word of its JSON body; done() prints one JSON line.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local function read(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

function init(args)
  answers = {}
  mode = args[1]
  counter = 0
  if mode == "get" then
    fixed = wrk.format("GET")
    return
  end
  prefix, suffix = read(args[2]), read(args[3])
  headers = {["Content-Type"] = args[4]}
  if mode == "same" then
    fixed = wrk.format("POST", nil, headers, prefix .. args[5] .. suffix)
  else
    run = args[5]
  end
end

function request()
  if fixed then return fixed end
  counter = counter + 1
  local tag = string.format("%s%02d%012d", run, id, counter)
  return wrk.format("POST", nil, headers, prefix .. tag .. suffix)
end

function response(status, headers, body)
  local key = status .. " " .. (body:match('"status": *"(%a+)"') or "-")
  answers[key] = (answers[key] or 0) + 1
end

function done(summary, latency, requests)
  local parts = {}
  for _, thread in ipairs(threads) do
    for key, count in pairs(thread:get("answers")) do
      parts[key] = (parts[key] or 0) + count
    end
  end
  local answers_json = {}
  for key, count in pairs(parts) do
    table.insert(answers_json, string.format('"%s": %d', key, count))
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, "socket_errors": %d, "answers": {%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    errors.connect + errors.read + errors.write + errors.timeout, table.concat(answers_json, ", ")))
end
