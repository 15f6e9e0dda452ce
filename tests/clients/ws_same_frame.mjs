// Read-your-writes over WebSockets (issue 10): a chat message and a `count` request in ONE
// WebSocket frame, as MQTT.js in a browser may send them, N times; the count must include
// the message every time. The MQTT packets are built by hand (MQTT 3.1.1) so that both are
// surely in one frame.   node ws_same_frame.mjs WSPORT USER PASSWORD ROOM N
import WebSocket from 'ws';

const [port, user, password, room, n] = process.argv.slice(2);

function varint(len) {
  const out = [];
  do { let b = len % 128; len = Math.floor(len / 128); if (len > 0) b |= 128; out.push(b); } while (len > 0);
  return Buffer.from(out);
}
const str = (s) => { const b = Buffer.from(s, 'utf8'); const l = Buffer.alloc(2); l.writeUInt16BE(b.length); return Buffer.concat([l, b]); };
const u16 = (v) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
const packet = (type, body) => Buffer.concat([Buffer.from([type]), varint(body.length), body]);

const connect = packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 0xC2]), u16(60),
  str(`${user}:wsframe`), str(user), str(password)]));
const subscribe = packet(0x82, Buffer.concat([u16(1), str(`chat/users/${user}/res`), Buffer.from([0])]));
let mid = 10;
const publish = (topic, payload, qos) => packet(qos ? 0x32 : 0x30,
  Buffer.concat([str(topic), qos ? u16(mid++) : Buffer.alloc(0), Buffer.from(payload)]));

const ws = new WebSocket(`ws://127.0.0.1:${port}/`, 'mqtt');
let buf = Buffer.alloc(0);
const waiting = [];
function packets() { // complete MQTT packets out of buf
  const out = [];
  for (;;) {
    if (buf.length < 2) break;
    let len = 0, mul = 1, i = 1, b;
    do { b = buf[i++]; len += (b & 127) * mul; mul *= 128; } while (b & 128 && i < buf.length);
    if (buf.length < i + len) break;
    out.push({ type: buf[0] >> 4, body: buf.subarray(i, i + len) });
    buf = buf.subarray(i + len);
  }
  return out;
}
function next(type) { return new Promise((resolve) => waiting.push({ type, resolve })); }
ws.on('message', (data) => {
  buf = Buffer.concat([buf, data]);
  for (const p of packets()) {
    const w = waiting.findIndex((x) => x.type === p.type);
    if (w >= 0) waiting.splice(w, 1)[0].resolve(p);
  }
});
const answerOf = (p) => { const tl = p.body.readUInt16BE(0); return JSON.parse(p.body.subarray(2 + tl).toString()); };

ws.on('open', async () => {
  ws.send(connect);
  const ack = await next(2);
  if (ack.body[1] !== 0) { console.log(JSON.stringify({ error: `CONNACK ${ack.body[1]}` })); process.exit(1); }
  ws.send(subscribe);
  await next(9);
  const count = (id) => publish(`chat/users/${user}/req`, JSON.stringify({ op: 'count', room, req_id: id }), 0);
  ws.send(count('c0'));
  let total = answerOf(await next(3)).result.total;
  let missed = 0;
  const seen = [];
  for (let i = 1; i <= Number(n); i++) {
    const msg = publish(`chat/rooms/${room}/send`, JSON.stringify({ type: 'msg', body: `frame ${i}`,
      client_msg_id: `wsframe-${process.pid}-${i}` }), 1);
    ws.send(Buffer.concat([msg, count(`c${i}`)])); // one WebSocket frame
    const a = answerOf(await next(3));
    const t = a.result.total;
    seen.push(t - total);
    if (t !== total + 1) missed++;
    total = t;
  }
  console.log(JSON.stringify({ runs: Number(n), missed, increments: seen }));
  ws.close();
  process.exit(0);
});
ws.on('error', (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
