-- GET with the bearer token from the TOKEN environment variable (when set).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local token = os.getenv("TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
