-- GET /test with a valid header and payload but a different forged signature each time,
-- of the genuine signature's length and canonical base64url (unused bits zero), so that
-- every request reaches the signature check.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local token = os.getenv("TOKEN")
local head, genuine = token:match("^(.*%.)(.*)$")
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
-- The last character carries 4 (length 2 mod 4) or 2 (length 3 mod 4) unused bits.
local step = ({[2] = 16, [3] = 4})[#genuine % 4] or 1
math.randomseed(os.time())

function request()
  local sig = {}
  for i = 1, #genuine - 1 do
    local n = math.random(1, 64)
    sig[i] = alphabet:sub(n, n)
  end
  local n = (math.random(0, 64 / step - 1) * step) + 1
  sig[#genuine] = alphabet:sub(n, n)
  return wrk.format("GET", "/test", {["Authorization"] = "Bearer " .. head .. table.concat(sig)})
end
