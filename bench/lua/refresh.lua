-- POST /account/refresh, chaining tokens: every answer's refresh token is the next request's,
-- since a token presented twice is reuse. The starting tokens come from the file TOKENS
-- (one per line, at least one per connection).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local queue = {}
for line in io.lines(os.getenv("TOKENS")) do
  queue[#queue + 1] = line
end

function request()
  local token = table.remove(queue, 1) or "exhausted"
  return wrk.format("POST", "/account/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token": "' .. token .. '"}')
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then
    queue[#queue + 1] = token
  end
end
