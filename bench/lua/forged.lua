-- GET /test with a valid header and payload but a different forged signature each time.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local token = os.getenv("TOKEN")
local head = token:match("^(.*%.)")
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
math.randomseed(os.time())

function request()
  local sig = {}
  for i = 1, 43 do
    local n = math.random(1, 64)
    sig[i] = alphabet:sub(n, n)
  end
  return wrk.format("GET", "/test", {["Authorization"] = "Bearer " .. head .. table.concat(sig)})
end
