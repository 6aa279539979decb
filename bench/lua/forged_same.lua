-- GET /test with one forged token on every request: TOKEN with the first character of its
-- signature changed (the variant other apps' benchmarks use; a cache cannot tell it apart).
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
local token = os.getenv("TOKEN")
local head, sig = token:match("^(.*%.)(.*)$")
local first = sig:sub(1, 1) == "A" and "B" or "A"
wrk.headers["Authorization"] = "Bearer " .. head .. first .. sig:sub(2)
