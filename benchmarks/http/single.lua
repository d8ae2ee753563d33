-- One reading per request (the API document's example body), to one of 64
-- objects per connection thread, like a fleet of devices.
local body = '{"accessKey":"fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238",' ..
             '"deviceId":"outdoors_u871a","data":{"timestamp":1584156800,"temperature":4.7}}'
local headers = {["Content-Type"] = "application/json"}
if os.getenv("WRITEAPI_CLOSE") == "1" then headers["Connection"] = "close" end
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/write/v3/bucket/homelab/device" .. (counter % 64), headers, body)
end
