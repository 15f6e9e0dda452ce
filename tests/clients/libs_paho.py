# paho-mqtt 1.6.1 (Debian) as a real mqchat client, with its DEFAULT client id, MQTT 3.1.1
# or 5: connect, subscribe its answers and the room, send a message, ask for the room's
# history, and check the message is in it.   libs_paho.py PORT USER PASSWORD ROOM 311|5
import json
import sys
import time

import paho.mqtt.client as mqtt

port, user, password, room, ver = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
proto = mqtt.MQTTv5 if ver == "5" else mqtt.MQTTv311
body = "hello from paho %s %d" % (ver, time.time_ns())
st = {"ok": False, "live": False, "in_history": False, "connack": None}

c = mqtt.Client(protocol=proto)  # client_id left to paho's default
c.username_pw_set(user, password)


def on_connect(cl, ud, flags, rc, props=None):
    st["connack"] = int(rc.value) if hasattr(rc, "value") else int(rc)
    if st["connack"] == 0:
        cl.subscribe([("chat/users/%s/#" % user, 1), ("chat/rooms/%s/messages" % room, 1)])


def on_subscribe(cl, ud, mid, granted, props=None):
    cl.publish("chat/rooms/%s/send" % room, json.dumps({"type": "msg", "body": body, "client_msg_id": "py-%d" % time.time_ns()}), qos=1)


def on_message(cl, ud, msg):
    j = json.loads(msg.payload)
    if msg.topic.endswith("/messages") and j.get("body") == body:
        st["live"] = True
        cl.publish("chat/users/%s/req" % user, json.dumps({"op": "history", "room": room, "req_id": "h1", "limit": 5}), qos=1)
    elif msg.topic == "chat/users/%s/res" % user and j.get("req_id") == "h1":
        st["in_history"] = bool(j.get("ok")) and any(m.get("body") == body for m in j["result"]["messages"])
        st["ok"] = st["live"] and st["in_history"]


c.on_connect = on_connect
c.on_subscribe = on_subscribe
c.on_message = on_message
c.connect("127.0.0.1", port, 30)
t0 = time.time()
while time.time() - t0 < 10 and not st["ok"]:
    c.loop(0.1)
st["client_id"] = c._client_id.decode() if isinstance(c._client_id, bytes) else str(c._client_id)
c.disconnect()
print(json.dumps(st))
