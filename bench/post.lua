-- wrk script for the throughput benchmark: POST a small body to the call endpoint.
wrk.method = "POST"
wrk.body = "ping"
wrk.headers["Content-Type"] = "application/octet-stream"
-- Every call carries the token (gustd authenticates each request).
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("GUST_TOKEN") or "")
