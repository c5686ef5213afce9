-- wrk script: each request carries the next of the tokens in $TOKENS_FILE (one a line), so a
-- gateway's verified-token cache cannot answer from one entry. The requests are formatted once in
-- init(), so what wrk pays per request is a table lookup.
local requests, count, next_index = {}, 0, 0

function init(args)
  local path = os.getenv("TOKENS_FILE") or error("TOKENS_FILE is not set")
  for line in io.lines(path) do
    if #line > 0 then
      count = count + 1
      requests[count] = wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. line })
    end
  end
  if count == 0 then error("no tokens in " .. path) end
  next_index = math.random(count) - 1 -- threads start at different tokens
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end
