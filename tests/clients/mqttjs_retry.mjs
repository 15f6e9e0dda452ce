// What MQTT.js (the npm package mqtt, default options but MQTT 5) does when the broker
// turns its CONNECT away: tests/integration/test_client_retry.c runs it.
//   node mqttjs_retry.mjs PORT USER PASSWORD SECONDS
// Prints one JSON line: connected (and after how many ms), how often the connection
// closed, the errors it reported, whether it was still trying when time was up.
import mqtt from 'mqtt';

const [port, user, password, secs] = process.argv.slice(2);
const t0 = Date.now();
let closes = 0;
const errors = [];
const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
  username: user, password, clientId: `${user}:mqttjs`, protocolVersion: 5,
  reconnectPeriod: 1000, connectTimeout: 5000,
});
c.on('close', () => { closes++; });
c.on('error', (e) => { errors.push(String(e.code ?? e.message)); });
const done = (connected) => {
  console.log(JSON.stringify({ connected, after_ms: Date.now() - t0, closes, errors, reconnecting: c.reconnecting }));
  c.end(true, () => process.exit(0));
  setTimeout(() => process.exit(0), 500);
};
c.on('connect', () => done(true));
setTimeout(() => done(false), Number(secs) * 1000);
