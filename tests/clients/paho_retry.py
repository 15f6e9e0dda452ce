# What paho-mqtt (Debian's python3-paho-mqtt 1.6.1) does when the broker turns its CONNECT
# away: tests/integration/test_client_retry.c runs it with /usr/bin/python3.
#   paho_retry.py PORT USER PASSWORD SECONDS
# Prints one JSON line: connected (after how many ms), the CONNACK codes it saw, how often
# it was disconnected.
import json
import sys
import time

import paho.mqtt.client as mqtt

port, user, password, secs = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
t0 = time.time()
st = {"connected": False, "connacks": [], "disconnects": 0}


def rc_int(rc):
    return int(rc.value) if hasattr(rc, "value") else int(rc)


def on_connect(client, userdata, flags, rc, properties=None):
    st["connacks"].append(rc_int(rc))
    if rc_int(rc) == 0:
        st["connected"] = True
        st["after_ms"] = int((time.time() - t0) * 1000)


def on_disconnect(client, userdata, rc, properties=None):
    st["disconnects"] += 1


c = mqtt.Client(client_id=f"{user}:paho", protocol=mqtt.MQTTv5)
c.username_pw_set(user, password)
c.reconnect_delay_set(1, 1)
c.on_connect = on_connect
c.on_disconnect = on_disconnect
c.connect_async("127.0.0.1", port, 30)
c.loop_start()
while time.time() - t0 < secs and not st["connected"]:
    time.sleep(0.05)
if st["connected"]:
    c.disconnect()
c.loop_stop()
st.setdefault("after_ms", int((time.time() - t0) * 1000))
print(json.dumps(st))
