-- One fixed request, from the environment: METHOD, BODY, AUTH (a bearer
-- token), FLEET_SECRET, ACCEPT_ENCODING, IF_NONE_MATCH (an ETag). Used by bench/run.sh for every fixed-body path.
wrk.method = os.getenv("METHOD") or "GET"
local body = os.getenv("BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
local auth = os.getenv("AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end
local secret = os.getenv("FLEET_SECRET")
if secret and secret ~= "" then
  wrk.headers["X-Fleet-Secret"] = secret
end
local enc = os.getenv("ACCEPT_ENCODING")
if enc and enc ~= "" then
  wrk.headers["Accept-Encoding"] = enc
end
local etag = os.getenv("IF_NONE_MATCH")
if etag and etag ~= "" then
  wrk.headers["If-None-Match"] = etag
end
