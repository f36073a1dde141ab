-- wrk script: POST one JPEG as a raw image/jpeg body to /v1/detect.
-- usage: wrk -s scripts/load_post.lua http://127.0.0.1:8080/v1/detect -- IMAGE.jpg
function init(args)
  local f = assert(io.open(args[1] or "tests/fixtures/images/zidane.jpg", "rb"))
  wrk.body = f:read("*all")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "image/jpeg"
end


function done(summary, latency, requests)
  io.write(string.format("requests %d  non-2xx/3xx %d  timeouts %d\n",
    summary.requests, summary.errors.status, summary.errors.timeout))
end
