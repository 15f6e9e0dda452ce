// MQTT.js as a real mqchat client, with its DEFAULT client id (mqttjs_ + 8 hex digits):
// connect (TCP or WebSockets), subscribe its answers and the room, send a message, ask for
// the room's history, and check the message is in it (catching up).
//   node libs_mqttjs.mjs URL USER PASSWORD ROOM      (URL mqtt://127.0.0.1:P or ws://127.0.0.1:P)
import mqtt from 'mqtt';

const [url, user, password, room] = process.argv.slice(2);
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
const c = mqtt.connect(url, { username: user, password, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
const body = `hello from mqtt.js ${Date.now()}`;
setTimeout(() => out({ ok: false, error: 'timeout' }), 10000);
c.on('error', (e) => out({ ok: false, error: String(e.message ?? e) }));
c.on('connect', async () => {
  const clientId = c.options.clientId;
  try {
    await c.subscribeAsync([`chat/users/${user}/#`, `chat/rooms/${room}/messages`], { qos: 1 });
    let live = false;
    c.on('message', (topic, payload) => {
      const j = JSON.parse(payload.toString());
      if (topic.endsWith('/messages') && j.body === body) live = true;
      if (topic === `chat/users/${user}/res` && j.req_id === 'h1') {
        const found = j.ok && j.result.messages.some((m) => m.body === body && m.from === user);
        c.end(true, () => out({ ok: found && live, clientId, live, in_history: found }));
      }
    });
    await c.publishAsync(`chat/rooms/${room}/send`, JSON.stringify({ type: 'msg', body, client_msg_id: `js-${Date.now()}` }), { qos: 1 });
    await new Promise((r) => setTimeout(r, 300));
    await c.publishAsync(`chat/users/${user}/req`, JSON.stringify({ op: 'history', room, req_id: 'h1', limit: 5 }), { qos: 1 });
  } catch (e) {
    out({ ok: false, error: String(e.message ?? e), clientId });
  }
});
