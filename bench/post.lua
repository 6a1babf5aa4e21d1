-- wrk script: POST one body (a file named after `--`) and print the results as one JSON line.
-- Usage: wrk -t2 -c64 -d8s -s bench/post.lua URL -- body.json [content-type [Header: value]]

function init(args)
    local path = args[1] or error("usage: wrk ... -s post.lua URL -- body [type [header]]")
    local fh = assert(io.open(path, "rb"))
    wrk.method = "POST"
    wrk.body = fh:read("*a")
    wrk.headers["Content-Type"] = args[2] or "application/json"
    if args[3] then
        local name, value = args[3]:match("^([^:]+):%s*(.*)$")
        wrk.headers[name] = value
    end
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
