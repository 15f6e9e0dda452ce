// The browser client in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): tests/integration/test_web.c starts the broker, plugin and bridge,
// seeds the room ROOM (alice and bob) with 200 messages, and runs this.
//   node web_chat.mjs URL ALICE_PW BOB_PW ROOM SHOTDIR
// Prints one JSON line of checks; exits 0 either way (the C test judges the checks).
import { chromium } from 'playwright-core';

const [url, alicePw, bobPw, room, shots] = process.argv.slice(2);
const checks = {};
const check = (name, ok) => { checks[name] = !!ok; };
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const errors = [];
async function login(user, pw) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(user + ': ' + e.message));
  if (process.env.WEB_DEBUG) page.on('console', (m) => console.error(user + ' console: ' + m.text()));
  await page.goto(url);
  await page.fill('#login-user', user);
  await page.fill('#login-pass', pw);
  await page.click('#login-go');
  await page.waitForSelector('#app:not(.hidden)', { timeout: 10000 });
  await page.waitForSelector('#conn[data-state="online"]', { timeout: 10000 });
  return page;
}
const roomItem = (page, id) => page.locator(`#rooms li[data-room="${id}"]`);
const badge = async (page, id) => (await roomItem(page, id).locator('.badge').textContent()) || '';

try {
  const alice = await login('alice', alicePw);
  const bob = await login('bob', bobPw);
  // a wrong password is said in words
  {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(url);
    await p.fill('#login-user', 'alice');
    await p.fill('#login-pass', 'not-her-password');
    await p.click('#login-go');
    await p.waitForFunction(() => document.getElementById('login-error').textContent.length > 0, null, { timeout: 10000 });
    check('wrong_password_said', /wrong/i.test(await p.textContent('#login-error')));
    await ctx.close();
  }
  // the seeded room is listed for both, with bob's unread badge (200 from alice)
  await roomItem(bob, room).waitFor({ timeout: 10000 });
  check('unread_badge_shown', Number(await badge(bob, room)) >= 200);
  // bob opens it: newest page, then older pages as he scrolls up, to the beginning
  await roomItem(bob, room).click();
  await bob.waitForSelector('#messages .msg', { timeout: 10000 });
  for (let i = 0; i < 20; i++) {
    if ((await bob.textContent('#older')) === 'the beginning') break;
    await bob.evaluate(() => { document.getElementById('messages').scrollTop = 0; });
    await bob.waitForTimeout(300);
  }
  const n = await bob.locator('#messages .msg').count();
  check('history_paged_to_200', n >= 200 && (await bob.textContent('#older')) === 'the beginning');
  check('seed_first_message_shown', await bob.locator('#messages .msg .body', { hasText: /^seed 1$/ }).count() === 1);
  // read marker follows: the badge is gone
  await bob.waitForFunction((id) => !document.querySelector(`#rooms li[data-room="${id}"] .badge`).textContent, room, { timeout: 10000 });
  check('badge_cleared_on_read', true);

  // alice "creates" her direct room with bob from the browser: it is the one that exists
  // (one direct room per pair), opened
  await alice.fill('#direct-user', 'bob');
  await alice.click('#new-direct button');
  await alice.waitForSelector(`#room[data-room="${room}"]`, { timeout: 10000 });
  check('direct_with_bob_is_theirs', true);
  // alice starts a direct chat with carol (a room that did not exist); carol is not
  // logged in. Then alice and bob talk in their room, both ways.
  await alice.fill('#direct-user', 'carol');
  await alice.click('#new-direct button');
  await alice.waitForFunction(() => document.getElementById('room-title').textContent.includes('carol'), null, { timeout: 10000 });
  check('direct_created', true);
  await roomItem(alice, room).click();
  await alice.waitForSelector('#messages .msg');
  await alice.fill('#text', 'hi bob, from the browser');
  await alice.click('#send');
  await bob.locator('#messages .msg .body', { hasText: 'hi bob, from the browser' }).waitFor({ timeout: 10000 });
  check('alice_to_bob', true);
  await bob.fill('#text', 'hi alice!');
  await bob.click('#send');
  await alice.locator('#messages .msg .body', { hasText: 'hi alice!' }).waitFor({ timeout: 10000 });
  check('bob_to_alice', true);
  // an image as an inline image
  await bob.fill('#attach', 'https://example.com/cat.png');
  await bob.click('#send');
  await alice.locator('#messages .msg img[src="https://example.com/cat.png"]').waitFor({ timeout: 10000 });
  check('image_inline', true);

  // unread badges change: alice looks at her carol room, bob writes in theirs
  const carolRoom = await alice.evaluate(() => [...window.mqchat.rooms.values()].find((r) => r.participants.includes('carol') && r.kind === 'direct').id);
  await roomItem(alice, carolRoom).click();
  await bob.fill('#text', 'are you there?');
  await bob.click('#send');
  await alice.waitForFunction((id) => document.querySelector(`#rooms li[data-room="${id}"] .badge`).textContent === '1', room, { timeout: 10000 });
  check('badge_counts_up', true);

  // bob makes a group with alice: it appears in alice's list live, with its name
  await bob.fill('#group-name', 'Lunch');
  await bob.fill('#group-users', 'alice, carol');
  await bob.click('#new-group button');
  await alice.locator('#rooms li .name', { hasText: 'Lunch' }).waitFor({ timeout: 10000 });
  check('group_appears_live', true);
  // bob removes alice from it: it disappears from her list
  await bob.waitForSelector('#room-title:has-text("Lunch")');
  await bob.fill('#member-user', 'alice');
  await bob.click('#member-remove');
  await alice.locator('#rooms li .name', { hasText: 'Lunch' }).waitFor({ state: 'detached', timeout: 10000 });
  check('group_disappears_live', true);
  // a server error is shown in words: a group with a user that does not exist
  await bob.fill('#group-users', 'nosuchuser1');
  await bob.fill('#group-name', '');
  await bob.fill('#group-users', 'alice, nosuchuser1');
  await bob.click('#new-group button');
  await bob.waitForSelector('#toast:not(.hidden)', { timeout: 10000 });
  check('error_in_words', /nosuchuser1/.test(await bob.textContent('#toast')));

  // the network goes away and comes back: nothing missing
  await roomItem(bob, room).click();
  await bob.waitForSelector(`#room[data-room="${room}"]`);
  await roomItem(alice, room).click();
  await alice.waitForSelector('#messages .msg');
  // offline emulation blocks new connections; the open WebSocket is cut as a dropped
  // network would cut it
  await alice.context().setOffline(true);
  await alice.evaluate(() => window.mqchat.client.stream.destroy());
  await alice.waitForFunction(() => document.getElementById('conn').dataset.state !== 'online', null, { timeout: 20000 });
  check('offline_shown', true);
  await bob.fill('#text', 'while you were away');
  await bob.click('#send');
  await bob.waitForTimeout(500);
  await alice.context().setOffline(false);
  await alice.waitForSelector('#conn[data-state="online"]', { timeout: 20000 });
  await alice.locator('#messages .msg .body', { hasText: 'while you were away' }).waitFor({ timeout: 15000 });
  check('caught_up_after_reconnect', true);

  await alice.screenshot({ path: `${shots}/web-alice.png` });
  await bob.screenshot({ path: `${shots}/web-bob.png` });
} catch (e) {
  checks.exception = String(e.message || e).slice(0, 500);
}
checks.page_errors = errors;
console.log(JSON.stringify(checks));
await browser.close();
process.exit(0);
