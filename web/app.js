/*
 * mqchat's browser client: plain JavaScript on MQTT.js (the global `mqtt` of mqtt.min.js),
 * over the broker's websockets listener, the same origin that serves this page.
 *
 *  - log in with a password or a device token; "keep me logged in" makes a device token
 *    (token.create) and keeps it in localStorage, so the next visit never sends the password;
 *  - rooms by recent activity with unread badges and the last message (rooms.list), live
 *    (every room's messages on chat/rooms/+/messages, events on chat/users/<me>/events);
 *  - a room: history newest first, older pages as you scroll up (history before=), send,
 *    images inline and files as links, members, leave, disable / enable;
 *  - the read marker follows what is shown (read upto the newest message on screen);
 *  - a lost connection comes back by itself (MQTT.js reconnects every second) and catches
 *    up: history after the last message seen, and the rooms list again.
 * Every request goes to chat/users/<me>/req with a req_id and an MQTT 5 response topic of
 * this tab's own (chat/users/<me>/res/<tab>); a server error is shown in words.
 */
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const tab = 'web-' + Math.random().toString(16).slice(2, 10);
  const S = {
    client: null, user: null, resTopic: null, seq: 0, pending: new Map(),
    rooms: new Map(), current: null, oldest: null, newest: null, more: false, loadingOlder: false,
    everConnected: false,
  };

  // ------------------------------------------------------------------ helpers
  function toast(text) {
    const t = $('toast');
    t.textContent = text;
    t.classList.remove('hidden');
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.add('hidden'), 6000);
  }
  function setConn(state) {
    const c = $('conn');
    c.textContent = state;
    c.className = 'conn ' + state;
    c.dataset.state = state;
  }
  function roomName(r) {
    if (r.kind === 'direct') return r.participants.filter((p) => p !== S.user).join(', ') || S.user;
    return r.name || r.participants.join(', ');
  }
  function preview(m) {
    if (!m) return '';
    const what = m.type === 'msg' ? m.body : (m.attachment && (m.attachment.name || m.attachment.url)) || m.type;
    return (m.from === S.user ? 'you: ' : m.from + ': ') + (what || '');
  }
  function uuid() {
    return (crypto.randomUUID && crypto.randomUUID()) ||
      'x' + Date.now().toString(16) + Math.random().toString(16).slice(2);
  }

  // ------------------------------------------------------------------ requests
  function request(op, args) {
    return new Promise((resolve, reject) => {
      const reqId = tab + '-' + (++S.seq);
      const body = Object.assign({ op, req_id: reqId }, args || {});
      S.pending.set(reqId, { resolve, reject, op });
      S.client.publish('chat/users/' + S.user + '/req', JSON.stringify(body),
        { qos: 1, properties: { responseTopic: S.resTopic } }, (err) => {
          if (err) { S.pending.delete(reqId); reject(new Error(op + ': ' + err.message)); }
        });
      setTimeout(() => {
        if (S.pending.delete(reqId)) reject(new Error(op + ': no answer in 15 s'));
      }, 15000);
    });
  }
  async function ask(op, args) {
    try {
      return await request(op, args);
    } catch (e) {
      toast(e.message);
      throw e;
    }
  }

  // ------------------------------------------------------------------ rooms list
  function renderRooms() {
    const ul = $('rooms');
    const list = [...S.rooms.values()].sort((a, b) => activity(b) - activity(a) || (a.id < b.id ? 1 : -1));
    ul.textContent = '';
    for (const r of list) {
      const li = document.createElement('li');
      li.dataset.room = r.id;
      if (S.current === r.id) li.classList.add('active');
      if (!r.enabled) li.classList.add('disabled');
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = roomName(r);
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = r.unread ? String(r.unread) : '';
      const last = document.createElement('span');
      last.className = 'last';
      last.textContent = preview(r.last_message);
      li.append(name, badge, last);
      li.addEventListener('click', () => openRoom(r.id));
      ul.append(li);
    }
  }
  function activity(r) { return r.last_message ? r.last_message.id : (r.created_at - 1704067200000) * 4096; }
  async function loadRooms() {
    const seen = new Map();
    let before;
    for (let page = 0; page < 20; page++) { // up to 2,000 rooms
      const res = await ask('rooms.list', before ? { limit: 100, before } : { limit: 100 });
      for (const r of res.rooms) seen.set(r.id, r);
      if (!res.more) break;
      before = res.next;
    }
    S.rooms = seen;
    renderRooms();
    if (S.current && S.rooms.has(S.current)) renderRoomHead();
    else if (S.current) closeRoom();
  }

  // ------------------------------------------------------------------ one room
  function renderRoomHead() {
    const r = S.rooms.get(S.current);
    if (!r) return;
    $('room-title').textContent = roomName(r) + (r.enabled ? '' : ' (disabled)');
    $('room-members').textContent = r.participants.join(', ');
    const group = r.kind === 'group', owner = r.created_by === S.user;
    for (const id of ['member-user', 'member-add', 'member-remove']) $(id).classList.toggle('hidden', !(group && owner));
    $('room-leave').classList.toggle('hidden', !group);
    $('room-toggle').classList.toggle('hidden', !(group && owner));
    $('room-toggle').textContent = r.enabled ? 'Disable' : 'Enable';
    $('text').disabled = $('send').disabled = $('attach').disabled = !r.enabled;
  }
  function messageNode(m) {
    const div = document.createElement('div');
    div.className = 'msg' + (m.from === S.user ? ' mine' : '');
    div.dataset.id = String(m.id);
    const who = document.createElement('div');
    who.className = 'who';
    who.textContent = m.from;
    const when = document.createElement('span');
    when.className = 'when';
    when.textContent = new Date(m.ts).toLocaleTimeString();
    who.append(when);
    div.append(who);
    if (m.body) {
      const b = document.createElement('div');
      b.className = 'body';
      b.textContent = m.body;
      div.append(b);
    }
    if (m.attachment && typeof m.attachment.url === 'string' && /^https?:\/\//.test(m.attachment.url)) {
      const a = m.attachment;
      if (m.type === 'image' || /^image\//.test(a.mime || '')) {
        const img = document.createElement('img');
        img.src = a.url;
        img.alt = a.name || 'image';
        div.append(img);
      } else {
        const link = document.createElement('a');
        link.href = a.url;
        link.target = '_blank';
        link.rel = 'noopener noreferrer';
        link.textContent = a.name || a.url;
        div.append(link);
      }
    }
    return div;
  }
  function atBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 40; }
  function appendMessages(msgs) { // oldest first
    const box = $('messages');
    const stick = atBottom(box);
    for (const m of msgs) {
      if (box.querySelector('[data-id="' + m.id + '"]')) continue;
      box.append(messageNode(m));
      if (!S.newest || m.id > S.newest) S.newest = m.id;
      if (!S.oldest || m.id < S.oldest) S.oldest = m.id;
    }
    if (stick) box.scrollTop = box.scrollHeight;
  }
  function prependMessages(msgs) { // newest first, as history answers
    const box = $('messages'), older = $('older');
    const h = box.scrollHeight;
    for (const m of msgs) {
      if (box.querySelector('[data-id="' + m.id + '"]')) continue;
      older.after(messageNode(m));
      if (!S.oldest || m.id < S.oldest) S.oldest = m.id;
      if (!S.newest || m.id > S.newest) S.newest = m.id;
    }
    box.scrollTop += box.scrollHeight - h;
  }
  async function markRead() {
    const r = S.rooms.get(S.current);
    if (!r || !S.newest || document.hidden) return;
    if (r.unread === 0 && r.readUpto >= S.newest) return;
    const res = await ask('read', { room: S.current, upto: S.newest }).catch(() => null);
    if (res && S.rooms.get(res.room)) {
      const rr = S.rooms.get(res.room);
      rr.unread = res.unread;
      rr.readUpto = res.last_read_id;
      renderRooms();
    }
  }
  async function openRoom(id) {
    S.current = id;
    S.oldest = S.newest = null;
    S.more = false;
    const box = $('messages');
    box.querySelectorAll('.msg').forEach((n) => n.remove());
    $('older').textContent = '';
    $('no-room').classList.add('hidden');
    $('room').classList.remove('hidden');
    $('room').dataset.room = id;
    renderRoomHead();
    renderRooms();
    const res = await ask('history', { room: id, limit: 50 }).catch(() => null);
    if (!res || S.current !== id) return;
    S.more = res.more;
    appendMessages(res.messages.slice().reverse());
    $('older').textContent = S.more ? 'scroll up for older messages' : 'the beginning';
    box.scrollTop = box.scrollHeight;
    // a short room does not scroll: fill the view
    while (S.more && box.scrollHeight <= box.clientHeight && S.current === id) await loadOlder();
    markRead();
  }
  function closeRoom() {
    S.current = null;
    $('room').classList.add('hidden');
    $('no-room').classList.remove('hidden');
    renderRooms();
  }
  async function loadOlder() {
    if (!S.current || !S.more || S.loadingOlder) return;
    S.loadingOlder = true;
    const id = S.current;
    $('older').textContent = 'loading…';
    try {
      const res = await ask('history', { room: id, before: S.oldest, limit: 50 });
      if (S.current !== id) return;
      S.more = res.more;
      prependMessages(res.messages);
      $('older').textContent = S.more ? 'scroll up for older messages' : 'the beginning';
    } catch (e) {
      $('older').textContent = '';
    } finally {
      S.loadingOlder = false;
    }
  }
  async function catchUp() { // after a reconnect: what came while away
    if (!S.current) return;
    const id = S.current;
    let after = S.newest;
    for (let i = 0; i < 20 && after; i++) {
      const res = await ask('history', { room: id, after, limit: 100 }).catch(() => null);
      if (!res || S.current !== id) return;
      appendMessages(res.messages.slice().reverse());
      if (!res.more) break;
      after = S.newest;
    }
    markRead();
  }

  // ------------------------------------------------------------------ live traffic
  function onRoomMessage(roomId, m) {
    let r = S.rooms.get(roomId);
    if (!r) { loadRooms().catch(() => {}); return; }
    r.last_message = m;
    if (roomId === S.current) {
      appendMessages([m]);
      if (m.from === S.user) r.unread = 0; else markRead();
    } else if (m.from !== S.user) {
      r.unread = (r.unread || 0) + 1;
    }
    renderRooms();
  }
  function onEvent(ev) {
    if (ev.event === 'room.removed' && ev.room === S.current) closeRoom();
    if (ev.info) { S.rooms.set(ev.info.id, Object.assign(S.rooms.get(ev.info.id) || {}, ev.info)); renderRooms(); }
    if (ev.room === S.current) renderRoomHead();
    loadRooms().catch(() => {});
  }
  function onMessage(topic, payload) {
    let j;
    try { j = JSON.parse(payload.toString()); } catch (e) { return; }
    if (topic === S.resTopic || topic === 'chat/users/' + S.user + '/res') {
      const p = S.pending.get(j.req_id);
      if (!p) return;
      S.pending.delete(j.req_id);
      if (j.ok) p.resolve(j.result);
      else p.reject(new Error((j.error && j.error.message) || 'request failed') );
      return;
    }
    if (topic === 'chat/users/' + S.user + '/events') { onEvent(j); return; }
    const mm = /^chat\/rooms\/([^/]+)\/messages$/.exec(topic);
    if (mm) onRoomMessage(mm[1], j);
  }

  // ------------------------------------------------------------------ connection
  function connect(user, secret, remember) {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';
    S.user = user;
    S.resTopic = 'chat/users/' + user + '/res/' + tab;
    setConn('connecting');
    $('login-error').textContent = '';
    const client = mqtt.connect(url, {
      username: user, password: secret, clientId: user + ':' + tab, protocolVersion: 5,
      clean: true, reconnectPeriod: 1000, connectTimeout: 8000,
    });
    S.client = client;
    client.on('connect', async () => {
      setConn('online');
      await client.subscribeAsync([S.resTopic, 'chat/users/' + user + '/events', 'chat/rooms/+/messages'], { qos: 1 });
      const first = !S.everConnected;
      S.everConnected = true;
      if (first) {
        $('login').classList.add('hidden');
        $('app').classList.remove('hidden');
        $('me-name').textContent = user;
        if (remember && !secret.startsWith('mqt_')) {
          try {
            const t = await request('token.create', { name: 'browser ' + navigator.userAgent.slice(0, 40) });
            localStorage.setItem('mqchat.login', JSON.stringify({ user, token: t.token, id: t.id }));
          } catch (e) { toast('could not make a device token: ' + e.message); }
        }
      }
      if (!first) catchUp(); // first: what came while away, in the room on screen
      await loadRooms().catch(() => {});
    });
    client.on('reconnect', () => setConn('reconnecting'));
    client.on('offline', () => setConn('offline'));
    client.on('close', () => { if (S.everConnected) setConn('reconnecting'); });
    client.on('error', (e) => {
      // a refused CONNACK: wrong credentials (a closed connection is retried by itself)
      const text = e.code === 135 || e.code === 134 || e.code === 5 || e.code === 4
        ? 'Wrong user, password or token.' : String(e.message || e);
      if (!S.everConnected) {
        $('login-error').textContent = text;
        client.end(true);
        localStorage.removeItem('mqchat.login');
        setConn('offline');
      } else {
        toast(text);
      }
    });
    client.on('message', onMessage);
  }

  // ------------------------------------------------------------------ UI wiring
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    connect($('login-user').value.trim(), $('login-pass').value, $('login-remember').checked);
  });
  $('logout').addEventListener('click', async () => {
    const saved = JSON.parse(localStorage.getItem('mqchat.login') || 'null');
    if (saved && saved.id) await request('token.revoke', { id: saved.id }).catch(() => {});
    localStorage.removeItem('mqchat.login');
    if (S.client) S.client.end(true);
    location.reload();
  });
  $('composer').addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = $('text').value, url = $('attach').value.trim();
    if (!S.current || (!text && !url)) return;
    let msg;
    if (url) {
      const name = url.split('/').pop() || url;
      const image = /\.(png|jpe?g|gif|webp|svg)(\?|$)/i.test(url);
      msg = { type: image ? 'image' : 'file', attachment: { url, name } };
      if (text) msg.body = text;
    } else {
      msg = { type: 'msg', body: text };
    }
    msg.client_msg_id = uuid();
    S.client.publish('chat/rooms/' + S.current + '/send', JSON.stringify(msg), { qos: 1 }, (err, pkt) => {
      if (err) toast('not sent: ' + err.message);
      else if (pkt && pkt.reasonCode && pkt.reasonCode >= 0x80) toast('refused by the server (reason ' + pkt.reasonCode + ')');
    });
    $('text').value = '';
    $('attach').value = '';
  });
  $('messages').addEventListener('scroll', () => { if ($('messages').scrollTop < 60) loadOlder(); });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) markRead(); });
  $('new-direct').addEventListener('submit', async (e) => {
    e.preventDefault();
    const who = $('direct-user').value.trim();
    if (!who) return;
    const r = await ask('room.create', { participants: [who] }).catch(() => null);
    if (!r) return;
    $('direct-user').value = '';
    S.rooms.set(r.id, r);
    openRoom(r.id);
  });
  $('new-group').addEventListener('submit', async (e) => {
    e.preventDefault();
    const users = $('group-users').value.split(',').map((s) => s.trim()).filter(Boolean);
    const name = $('group-name').value.trim();
    const args = { participants: users };
    if (name) args.name = name;
    const r = await ask('room.create', args).catch(() => null);
    if (!r) return;
    $('group-users').value = $('group-name').value = '';
    S.rooms.set(r.id, r);
    openRoom(r.id);
  });
  async function membership(op) {
    const u = $('member-user').value.trim();
    if (!u || !S.current) return;
    const r = await ask(op, { room: S.current, users: [u] }).catch(() => null);
    if (r) { $('member-user').value = ''; loadRooms().catch(() => {}); }
  }
  $('member-add').addEventListener('click', () => membership('room.members.add'));
  $('member-remove').addEventListener('click', () => membership('room.members.remove'));
  $('room-leave').addEventListener('click', async () => {
    if (!S.current) return;
    const r = await ask('room.leave', { room: S.current }).catch(() => null);
    if (r) { S.rooms.delete(S.current); closeRoom(); }
  });
  $('room-toggle').addEventListener('click', async () => {
    const r = S.rooms.get(S.current);
    if (!r) return;
    const res = await ask(r.enabled ? 'room.disable' : 'room.enable', { room: r.id }).catch(() => null);
    if (res) loadRooms().catch(() => {});
  });

  // a kept device token logs in by itself
  const saved = JSON.parse(localStorage.getItem('mqchat.login') || 'null');
  if (saved && saved.user && saved.token) connect(saved.user, saved.token, false);
  window.mqchat = S; // for the tests and the curious
})();
