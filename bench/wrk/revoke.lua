-- POST /revoke with a new jti on every request (a repeated jti is answered
-- from memory without a write, so it would not measure durable revocation).
-- RUN_ID (from bench/run.sh) keeps jtis distinct across repetitions.
local run = os.getenv("RUN_ID") or "0"
local auth = os.getenv("AUTH") or ""
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. auth
request = function()
  n = n + 1
  local body = '{"jti":"bench-' .. run .. '-' .. n .. '","reason":"bench"}'
  return wrk.format(nil, nil, nil, body)
end
