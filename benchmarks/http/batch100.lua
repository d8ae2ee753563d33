-- 100 readings per request, to one of 64 objects.
local items = {}
for i = 1, 100 do
  items[i] = string.format('{"timestamp":%d,"temperature":%.1f,"humidity":%d}', 1584156800 + i * 60, 4.7 + i / 10, 40 + i % 20)
end
local body = '{"accessKey":"fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238",' ..
             '"deviceId":"outdoors_u871a","data":[' .. table.concat(items, ",") .. ']}'
local headers = {["Content-Type"] = "application/json"}
if os.getenv("WRITEAPI_CLOSE") == "1" then headers["Connection"] = "close" end
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/write/v3/bucket/homelab/batch" .. (counter % 64), headers, body)
end
