-- wrk script: POST a fixed JSON body and print exact results as one JSON line.
--
-- Environment: RG_BODY_FILE (path of the request body), RG_HEADERS (extra header lines,
-- "name: value" separated by "\n"). The `done` hook prints, after wrk's own report, a line
-- starting with "RGRESULT " followed by JSON: requests, duration, bytes, every error count
-- and latency percentiles in microseconds, read from wrk's full latency histogram.

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

wrk.method = "POST"
wrk.body = read_file(os.getenv("RG_BODY_FILE"))
wrk.headers["Content-Type"] = "application/json"
local extra = os.getenv("RG_HEADERS") or ""
for line in string.gmatch(extra, "[^\n]+") do
  local name, value = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors_connect":%d', e.connect),
    string.format('"errors_read":%d', e.read),
    string.format('"errors_write":%d', e.write),
    string.format('"errors_timeout":%d', e.timeout),
    string.format('"non_2xx":%d', e.status),
    string.format('"latency_mean_us":%.1f', latency.mean),
    string.format('"latency_max_us":%d', latency.max),
  }
  for _, p in ipairs({50, 90, 99, 99.9}) do
    parts[#parts + 1] = string.format('"p%s_us":%d', tostring(p), latency:percentile(p))
  end
  io.write("RGRESULT {" .. table.concat(parts, ",") .. "}\n")
end
