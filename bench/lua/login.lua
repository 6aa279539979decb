-- POST /account/login with the EMAIL and PASSWORD environment variables.
dofile(os.getenv("BENCH_LUA") .. "/report.lua")
wrk.method = "POST"
wrk.path = "/account/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email": "%s", "password": "%s"}', os.getenv("EMAIL"), os.getenv("PASSWORD"))
