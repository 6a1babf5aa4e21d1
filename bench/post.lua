-- wrk script: POST one JSON body (a file named after `--`) and print the results as one JSON line.
-- Usage: wrk -t2 -c64 -d8s -s bench/post.lua URL -- body.json

function init(args)
    local path = args[1] or error("usage: wrk ... -s post.lua URL -- body.json")
    local fh = assert(io.open(path, "rb"))
    wrk.method = "POST"
    wrk.body = fh:read("*a")
    wrk.headers["Content-Type"] = "application/json"
    fh:close()
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '\nWRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
        '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
