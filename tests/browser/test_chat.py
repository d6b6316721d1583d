"""The web chat page in a real browser: Debian's Chromium driven by Playwright, against a real
broker (the release binary) on a free port with a SQLite file of its own.

Run by scripts/test.sh. Prints "N passed, N failed" and exits non-zero when anything failed.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER = os.environ.get("WSBROKER_BIN") or os.path.join(ROOT, "target", "release", "wsbroker")
SCREENSHOT = os.path.join(ROOT, "docs", "screenshots", "conversation.png")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = "browser-test-secret"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """The wsbroker binary on a fixed loopback port, killed and started again at will."""

    def __init__(self, *flags):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="wsbroker-browser-")
        self.flags = list(flags)
        self.process = None
        self.start()

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        database = [] if "--database-url" in self.flags else ["--database-url", f"sqlite://{self.dir}/chat.db"]
        args = [BROKER, "--listen", f"127.0.0.1:{self.port}", *database, *self.flags]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 15
        for line in self.process.stdout:
            if "listening on" in line:
                return
            if time.monotonic() > deadline:
                break
        raise RuntimeError("the broker did not start")

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)

    def hang(self):
        """Stops the broker without closing anything (SIGSTOP): its sockets stay open, silent."""
        self.process.send_signal(signal.SIGSTOP)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a hung (stopped) broker must run to stop
            self.process.terminate()
            self.process.wait(timeout=15)

    def close(self):
        """Stops the broker for good and removes its directory (its database)."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def metric(self, name):
        text = urllib.request.urlopen(f"{self.origin}/metrics", timeout=5).read().decode()
        line = next(l for l in text.splitlines() if l.split(" ")[0] == name)
        return int(line.split(" ")[1])


def token(sub, lifetime=3600):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": sub, "exp": int(time.time()) + lifetime}).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def sign_in(page, origin, name):
    page.goto(f"{origin}/")
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_text("live", timeout=5000)


def message(page, text):
    return page.locator("#messages li", has_text=text)


def test_two_people_chat_reload_delete_and_reconnect(browser):
    broker = Broker("--allowed-origins", "http://127.0.0.1:PORT")
    try:
        broker.stop()
        broker.flags = ["--allowed-origins", broker.origin]
        broker.start()
        headers = urllib.request.urlopen(f"{broker.origin}/", timeout=5).headers
        policy = headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy, policy

        alice_context, bob_context = browser.new_context(), browser.new_context()
        alice, bob = alice_context.new_page(), bob_context.new_page()
        dialogs = []
        console = []
        for page in (alice, bob):
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("console", lambda msg: console.append(msg.text))
            page.on("pageerror", lambda err: console.append(f"pageerror {err}"))
        sign_in(alice, broker.origin, "alice")
        alice.get_by_label("New room").fill("lobby")
        alice.get_by_role("button", name="Create").click()
        expect(alice.locator("#room-title")).to_have_text("lobby")

        sign_in(bob, broker.origin, "bob")
        bob.locator("#room-list").get_by_role("button", name="lobby").click()
        expect(bob.locator("#room-title")).to_have_text("lobby")
        expect(bob.locator("#participants li", has_text="alice")).to_contain_text("online")
        expect(alice.locator("#participants li", has_text="bob")).to_contain_text("online")

        alice.get_by_role("textbox", name="Message", exact=True).fill("hello bob")
        alice.get_by_role("textbox", name="Message", exact=True).press("Enter")
        expect(message(bob, "hello bob")).to_be_visible(timeout=1000)
        expect(message(alice, "hello bob").locator(".status")).to_contain_text("sent")

        bob.get_by_role("textbox", name="Message", exact=True).fill("hi alice\nhow are you?")
        bob.get_by_role("textbox", name="Message", exact=True).press("Enter")
        expect(message(alice, "how are you?")).to_be_visible()
        alice.set_viewport_size({"width": 1100, "height": 640})
        alice.screenshot(path=SCREENSHOT)

        bob.reload()
        expect(message(bob, "hello bob")).to_be_visible()
        expect(message(bob, "how are you?")).to_be_visible()

        for attack in ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>"]:
            alice.get_by_role("textbox", name="Message", exact=True).fill(attack)
            alice.get_by_role("textbox", name="Message", exact=True).press("Enter")
            expect(bob.locator("#messages .text", has_text=attack)).to_have_text(attack)
        assert bob.locator("#messages img").count() == 0, "no element was made from content"
        assert not dialogs, f"a dialog fired: {dialogs}"

        too_long = "x" * 4100
        box = alice.get_by_role("textbox", name="Message", exact=True)
        box.fill(too_long)
        box.press("Enter")
        expect(alice.locator("#composer-error")).to_contain_text("Too long: 4100 characters, at most 4096")
        expect(box).to_have_value(too_long)
        expect(message(alice, too_long)).to_have_count(0)
        expect(message(bob, too_long)).to_have_count(0)
        box.fill("")

        message(alice, "hello bob").get_by_role("button", name="Delete").click()
        expect(message(bob, "message deleted")).to_be_visible()
        expect(message(bob, "hello bob")).to_have_count(0)

        broker.kill()
        expect(alice.locator("#connection")).to_contain_text("reconnecting", timeout=5000)
        broker.start()
        expect(alice.locator("#connection")).to_have_text("live", timeout=15000)
        alice.get_by_role("textbox", name="Message", exact=True).fill("back again")
        alice.get_by_role("textbox", name="Message", exact=True).press("Enter")
        try:
            expect(message(bob, "back again")).to_be_visible(timeout=15000)
        except AssertionError:
            print("bob:", bob.locator("#connection").inner_text(), bob.locator("#room-title").inner_text(), bob.locator("#messages").inner_text())
            print("alice:", alice.locator("#messages").inner_text())
            print("console:", console)
            raise
        expect(message(alice, "back again").locator(".status")).to_contain_text("sent")
        assert not dialogs, f"a dialog fired: {dialogs}"
        alice.locator("#online-list").get_by_role("button", name="Message bob").click()
        expect(alice.locator("#room-title")).to_have_text("bob")
        alice.set_viewport_size({"width": 390, "height": 800})
        width = alice.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"a phone-sized viewport scrolls sideways: {width}px"
        errors = [line for line in console if line.startswith("pageerror")]
        assert not errors, f"the page threw: {errors}"
    finally:
        broker.close()


def test_a_room_shows_its_last_100_and_older_ones_on_scrolling_up(browser):
    broker = Broker("--rate-limit", "0")
    try:
        for n in range(120):
            body = json.dumps({"from": "cms", "data": {"content": f"note {n}"}}).encode()
            request = urllib.request.Request(
                f"{broker.origin}/api/v1/chat/rooms/archive/messages", data=body, method="POST"
            )
            urllib.request.urlopen(request, timeout=5).read()
        page = browser.new_context().new_page()
        sign_in(page, broker.origin, "reader")
        page.locator("#room-list").get_by_role("button", name="archive").click()
        expect(message(page, "note 119")).to_be_visible()
        expect(page.locator("#messages li")).to_have_count(100)
        expect(message(page, "note 19")).to_have_count(0)
        page.locator("#messages").evaluate("list => list.scrollTop = 0")
        expect(page.locator("#messages li")).to_have_count(120)
        first = page.locator("#messages li").first
        expect(first).to_contain_text("note 0")
    finally:
        broker.close()


def test_with_auth_on_a_page_without_a_token_cannot_connect_and_says_why(browser):
    broker = Broker("--auth-enabled", "--jwt-secret", SECRET)
    try:
        page = browser.new_context().new_page()
        page.goto(f"{broker.origin}/")
        expect(page.locator("#signin-error")).to_contain_text("needs a token")
        page.get_by_label("Token (JWT)").fill("not-a-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#signin-error")).to_contain_text("refused")
        assert broker.metric("wsbroker_connections_opened_total") == 0, "no WebSocket was opened"

        signed = browser.new_context().new_page()
        signed.goto(f"{broker.origin}/?token={token('carol')}")
        expect(signed.locator("#connection")).to_have_text("live", timeout=5000)
        expect(signed.locator("#me")).to_have_text("signed in as carol")
        assert broker.metric("wsbroker_connections_opened_total") == 1

        # A token that runs out soon: the page says so and takes a new one without reloading.
        expiring = browser.new_context().new_page()
        expiring.goto(f"{broker.origin}/?token={token('dave', lifetime=20)}")
        expect(expiring.locator("#expiry")).to_be_visible(timeout=5000)
        expect(expiring.locator("#expiry-text")).to_contain_text("session ends")
        expiring.get_by_label("New token").fill(token("dave", lifetime=3600))
        expiring.get_by_role("button", name="Renew").click()
        expect(expiring.locator("#expiry")).to_be_hidden()
        expect(expiring.locator("#connection")).to_have_text("live")
    finally:
        broker.close()


@contextlib.contextmanager
def chatting(browser, *flags):
    """A broker of its own, with alice and bob signed in and both in `lobby`; at the end, no page
    may have thrown."""
    broker = Broker(*flags)
    try:
        alice, bob = browser.new_context().new_page(), browser.new_context().new_page()
        errors = []
        for page in (alice, bob):
            page.on("pageerror", lambda err: errors.append(err.stack or str(err)))
        sign_in(alice, broker.origin, "alice")
        alice.get_by_label("New room").fill("lobby")
        alice.get_by_role("button", name="Create").click()
        expect(alice.locator("#room-title")).to_have_text("lobby")
        sign_in(bob, broker.origin, "bob")
        bob.get_by_label("New room").fill("lobby")
        bob.get_by_role("button", name="Create").click()
        expect(bob.locator("#room-title")).to_have_text("lobby")
        yield broker, alice, bob
        assert not errors, f"the page threw: {errors}"
    finally:
        broker.close()


def say(page, text):
    box = page.get_by_role("textbox", name="Message", exact=True)
    box.fill(text)
    box.press("Enter")


def test_a_message_sent_while_the_broker_hangs_is_delivered_once_after_its_restart(browser):
    with chatting(browser) as (broker, alice, bob):
        say(alice, "before the hang")
        expect(message(alice, "before the hang").locator(".status")).to_contain_text("sent")
        broker.hang()
        say(alice, "during the hang")
        expect(message(alice, "during the hang").locator(".status")).to_contain_text("pending")
        # The page finds the silent broker by itself (no answer within 10 s) and reconnects.
        expect(alice.locator("#connection")).to_contain_text("reconnecting", timeout=20000)
        broker.kill()
        broker.start()
        expect(message(alice, "during the hang").locator(".status")).to_contain_text("sent", timeout=30000)
        expect(message(bob, "during the hang")).to_have_count(1, timeout=30000)
        bob.reload()
        expect(message(bob, "during the hang")).to_have_count(1)
        expect(message(bob, "before the hang")).to_have_count(1)


def test_a_delete_made_while_offline_deletes_when_back_and_never_resends(browser):
    with chatting(browser) as (broker, alice, bob):
        say(alice, "to be deleted")
        expect(message(alice, "to be deleted").locator(".status")).to_contain_text("sent")
        expect(message(bob, "to be deleted")).to_be_visible()
        broker.kill()
        expect(alice.locator("#connection")).to_contain_text("reconnecting", timeout=5000)
        message(alice, "to be deleted").get_by_role("button", name="Delete").click()
        expect(message(alice, "to be deleted").locator(".status")).not_to_contain_text("not sent")
        broker.start()
        # bob sees it deleted live, or gone from the room he reloads after reconnecting.
        expect(message(bob, "to be deleted")).to_have_count(0, timeout=20000)
        expect(message(alice, "to be deleted")).to_have_count(0, timeout=20000)
        bob.reload()
        expect(message(bob, "to be deleted")).to_have_count(0)


def test_a_direct_message_shows_up_for_its_recipient_without_a_reload(browser):
    with chatting(browser) as (broker, alice, bob):
        alice.locator("#online-list").get_by_role("button", name="Message bob").click()
        expect(alice.locator("#room-title")).to_have_text("bob")
        say(alice, "psst, bob")
        expect(message(alice, "psst, bob").locator(".status")).to_contain_text("sent")
        conversation = bob.locator("#room-list").get_by_role("button", name="alice (direct)")
        expect(conversation).to_contain_text("• 1", timeout=5000)
        conversation.click()
        expect(bob.locator("#room-title")).to_have_text("alice")
        expect(message(bob, "psst, bob")).to_be_visible()


def test_a_message_deleted_while_a_page_was_offline_is_gone_when_it_is_back(browser):
    with chatting(browser) as (broker, alice, bob):
        say(alice, "soon gone")
        expect(message(bob, "soon gone")).to_be_visible()
        bob.context.set_offline(True)
        expect(bob.locator("#connection")).to_contain_text("reconnecting", timeout=20000)
        message(alice, "soon gone").get_by_role("button", name="Delete").click()
        expect(message(alice, "message deleted")).to_be_visible()
        bob.context.set_offline(False)
        expect(bob.locator("#connection")).to_have_text("live", timeout=20000)
        expect(message(bob, "soon gone")).to_have_count(0, timeout=10000)


def edit(page, old, new):
    message(page, old).get_by_role("button", name="Edit").click()
    box = page.get_by_role("textbox", name="Edit message")
    box.fill(new)
    box.press("Enter")


def test_an_edit_shows_for_everyone_live_after_a_reload_and_after_being_offline(browser):
    with chatting(browser) as (broker, alice, bob):
        say(alice, "helo wrld")
        expect(message(alice, "helo wrld").locator(".status")).to_contain_text("sent")
        expect(message(bob, "helo wrld")).to_be_visible()
        expect(message(bob, "helo wrld").get_by_role("button", name="Edit")).to_have_count(0)
        edit(alice, "helo wrld", "hello world")
        expect(message(bob, "hello world")).to_contain_text("(edited)")
        expect(message(bob, "helo wrld")).to_have_count(0)
        bob.reload()
        expect(bob.locator("#connection")).to_have_text("live", timeout=10000)
        expect(message(bob, "hello world")).to_contain_text("(edited)")
        # Offline while alice edits again: the resume brings the edit, without reloading the room.
        # The page takes the browser's word that it is offline (its heartbeat would take ~15 s).
        bob.context.set_offline(True)
        expect(bob.locator("#connection")).to_contain_text("reconnecting", timeout=5000)
        edit(alice, "hello world", "hello, whole world")
        expect(message(alice, "hello, whole world")).to_contain_text("(edited)")
        bob.context.set_offline(False)
        expect(bob.locator("#connection")).to_have_text("live", timeout=20000)
        expect(message(bob, "hello, whole world")).to_contain_text("(edited)", timeout=10000)


def test_reactions_show_counts_and_toggle_for_everyone_and_survive_a_reload(browser):
    with chatting(browser) as (broker, alice, bob):
        say(alice, "react to me")
        on_bob, on_alice = message(bob, "react to me"), message(alice, "react to me")
        expect(on_bob).to_be_visible()
        on_bob.get_by_role("button", name="React", exact=True).click()
        on_bob.get_by_role("button", name="React 👍").click()
        expect(on_alice.get_by_role("button", name="👍 1")).to_be_visible()
        on_alice.get_by_role("button", name="👍 1").click()
        expect(on_bob.get_by_role("button", name="👍 2")).to_have_attribute("aria-pressed", "true")
        on_bob.get_by_role("button", name="👍 2").click()
        expect(on_alice.get_by_role("button", name="👍 1")).to_have_attribute("aria-pressed", "true")
        expect(on_bob.get_by_role("button", name="👍 1")).to_have_attribute("aria-pressed", "false")
        bob.reload()
        expect(bob.locator("#connection")).to_have_text("live", timeout=10000)
        chip = message(bob, "react to me").get_by_role("button", name="👍 1")
        expect(chip).to_have_attribute("aria-pressed", "false")


def test_a_reply_quotes_its_message_and_its_thread_lists_it_after_a_reload_too(browser):
    with chatting(browser) as (broker, alice, bob):
        say(alice, "what time tomorrow?")
        question = message(bob, "what time tomorrow?")
        expect(question.locator(".status")).to_contain_text("React")
        question.get_by_role("button", name="Reply", exact=True).click()
        expect(bob.locator("#replying")).to_contain_text("Replying to alice: what time tomorrow?")
        say(bob, "at noon")
        answer = message(alice, "at noon")
        expect(answer.locator(".quote")).to_have_text("↪ alice: what time tomorrow?")
        for page in (alice, bob):
            original = page.locator("#messages li", has_text="what time tomorrow?").first
            expect(original.get_by_role("button", name="1 reply")).to_be_visible()
        alice.reload()
        expect(alice.locator("#connection")).to_have_text("live", timeout=10000)
        expect(message(alice, "at noon").locator(".quote")).to_have_text("↪ alice: what time tomorrow?")
        original = alice.locator("#messages li", has_text="what time tomorrow?").first
        original.get_by_role("button", name="1 reply").click()
        expect(alice.locator("#thread-messages li")).to_have_count(1)
        expect(alice.locator("#thread-messages li")).to_contain_text("at noon")


def test_unread_counts_show_in_the_room_list_and_title_and_reading_clears_them_for_good(browser):
    with chatting(browser) as (broker, alice, bob):
        for page in (alice, bob):
            page.get_by_label("New room").fill("side")
            page.get_by_role("button", name="Create").click()
            expect(page.locator("#room-title")).to_have_text("side")
        bob.locator("#room-list").get_by_role("button", name="lobby").click()
        expect(bob.locator("#room-title")).to_have_text("lobby")
        say(alice, "first in side")
        say(alice, "second in side")
        expect(message(alice, "second in side").locator(".status")).to_contain_text("sent")
        side = bob.locator("#room-list").get_by_role("button", name="side")
        expect(side).to_contain_text("• 2", timeout=5000)
        expect(bob).to_have_title("(2) wsbroker chat")
        side.click()
        expect(message(bob, "second in side")).to_be_visible()
        expect(bob).to_have_title("wsbroker chat")
        bob.locator("#room-list").get_by_role("button", name="lobby").click()
        # The room list shows the broker's counts again once it stored the read.
        expect(bob.locator("#room-list").get_by_role("button", name="side")).not_to_contain_text("•", timeout=5000)
        bob.reload()
        expect(bob.locator("#connection")).to_have_text("live", timeout=10000)
        expect(bob.locator("#room-list").get_by_role("button", name="side")).not_to_contain_text("•")


def test_who_is_typing_shows_while_they_type_and_goes_when_they_send(browser):
    with chatting(browser) as (_broker, alice, bob):
        bob.get_by_role("textbox", name="Message", exact=True).fill("I am writing")
        expect(alice.locator("#typing")).to_have_text("bob is typing…", timeout=5000)
        expect(bob.locator("#typing")).to_have_text("")
        bob.get_by_role("textbox", name="Message", exact=True).press("Enter")
        expect(message(alice, "I am writing")).to_be_visible()
        expect(alice.locator("#typing")).to_have_text("", timeout=5000)


def test_a_member_who_leaves_the_room_is_no_longer_listed(browser):
    with chatting(browser) as (_broker, alice, bob):
        expect(alice.locator("#participants li", has_text="bob")).to_contain_text("online")
        bob.get_by_role("button", name="Leave room").click()
        expect(bob.locator("#room-title")).to_have_text("Pick a room")
        expect(alice.locator("#participants li", has_text="bob")).to_have_count(0, timeout=5000)


def test_away_and_back_follow_presence_live(browser):
    with chatting(browser, "--away-after", "1500ms") as (_broker, alice, bob):
        bob_there = alice.locator("#participants li", has_text="bob")
        # (Not "online" first: with 1.5 s to go away, a slow box may show him away already.)
        expect(bob_there).to_be_visible()
        # Nobody asks: the page polls no presence; the broker tells the room bob went away.
        expect(bob_there).to_contain_text("away", timeout=5000)
        # Typing without sending shows a person there: the room is told bob is back.
        bob.get_by_role("textbox", name="Message", exact=True).fill("typing…")
        expect(bob_there).to_contain_text("online", timeout=5000)


def test_on_a_phone_the_message_box_stays_in_view_after_sending(browser):
    with chatting(browser, "--rate-limit", "0") as (_broker, alice, _bob):
        alice.set_viewport_size({"width": 390, "height": 640})
        box = alice.get_by_role("textbox", name="Message", exact=True)
        for n in range(25):
            say(alice, f"line {n} from a phone")
            expect(box).to_be_in_viewport()
        expect(message(alice, "line 24 from a phone").locator(".status")).to_contain_text("sent")
        expect(box).to_be_in_viewport()


def call(broker, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{broker.origin}/api/v1/chat/{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    return urllib.request.urlopen(request, timeout=5).status


def test_a_notice_to_everyone_shows_live_and_to_whoever_comes_later_until_dismissed(browser):
    with chatting(browser) as (broker, alice, bob):
        notice = {"type": "chat", "data": {"content": "maintenance at noon"}}
        assert call(broker, "POST", "rooms/_global/messages", notice) == 202
        for page in (alice, bob):
            expect(page.get_by_role("status", name="Notice")).to_contain_text("maintenance at noon")
        expect(message(alice, "maintenance at noon")).to_have_count(0)
        # carol was not there when it went out: she finds it from the stored chats to everyone.
        carol = browser.new_context().new_page()
        sign_in(carol, broker.origin, "carol")
        expect(carol.get_by_role("status", name="Notice")).to_contain_text("maintenance at noon")
        carol.get_by_role("button", name="Dismiss notice").click()
        expect(carol.locator("#notice")).to_be_hidden()
        # Dismissed for good: once the stored ones are checked again after a reload, still hidden.
        carol.reload()
        expect(carol.locator("#notice")).to_have_attribute("aria-busy", "false")
        expect(carol.locator("#notice")).to_be_hidden()
        bob.reload()
        expect(bob.get_by_role("status", name="Notice")).to_contain_text("maintenance at noon")


def test_a_chat_that_cannot_be_sent_says_why_and_can_be_dismissed(browser):
    # A broker that takes less than the page allows: the broker's refusal is what the page shows.
    with chatting(browser, "--max-content", "12") as (_broker, _alice, bob):
        say(bob, "am I too long for it?")
        failed = message(bob, "am I too long for it?")
        expect(failed.locator(".status")).to_contain_text("too long", timeout=5000)
        expect(failed.get_by_role("button", name="Retry")).to_have_count(0)
        failed.get_by_role("button", name="Dismiss").click()
        expect(failed).to_have_count(0)


def test_a_room_whose_stream_started_again_is_reloaded_and_goes_on(browser):
    # Without a store a restart starts every room's stream again: the resume gets
    # recovered:false (epoch_changed), the page reloads the room and chats on.
    with chatting(browser, "--database-url", "none", "--default-room", "") as (broker, alice, bob):
        say(alice, "before the restart")
        expect(message(bob, "before the restart")).to_be_visible()
        broker.kill()
        broker.start()
        expect(bob.locator("#connection")).to_have_text("live", timeout=20000)
        expect(alice.locator("#connection")).to_have_text("live", timeout=20000)
        say(alice, "after the restart")
        expect(message(bob, "after the restart")).to_have_count(1, timeout=10000)
        expect(message(alice, "after the restart").locator(".status")).to_contain_text("sent")
        expect(message(bob, "before the restart")).to_be_visible()  # kept: no history to reload


def test_a_room_one_is_added_to_shows_with_its_unread_count_and_goes_when_removed(browser):
    with chatting(browser) as (broker, alice, bob):
        assert call(broker, "POST", "rooms?user=alice", {"name": "team", "type": "private"}) == 201
        assert call(broker, "POST", "rooms/team/participants/bob?user=alice", {}) == 201
        team = bob.locator("#room-list").get_by_role("button", name="team (private)")
        expect(team).to_be_visible(timeout=5000)
        # Bob's page never joined it: the count comes from his own stream.
        assert call(broker, "POST", "rooms/team/messages", {"type": "chat", "data": {"content": "welcome"}}) == 202
        expect(team).to_contain_text("• 1", timeout=5000)
        expect(bob).to_have_title("(1) wsbroker chat")
        team.click()
        expect(message(bob, "welcome")).to_be_visible()
        expect(bob).to_have_title("wsbroker chat")
        # Removed while it is on show: the room closes and leaves the list.
        assert call(broker, "DELETE", "rooms/team/participants/bob?user=alice") == 204
        expect(bob.locator("#room-title")).to_have_text("Pick a room", timeout=5000)
        expect(team).to_have_count(0)


def test_read_receipts_show_who_read_up_to_which_message_among_three(browser):
    with chatting(browser) as (broker, alice, bob):
        carol = browser.new_context().new_page()
        sign_in(carol, broker.origin, "carol")
        carol.get_by_label("New room").fill("lobby")
        carol.get_by_role("button", name="Create").click()
        expect(carol.locator("#room-title")).to_have_text("lobby")
        say(alice, "did you all see this")
        expect(message(bob, "did you all see this")).to_be_visible()
        expect(message(carol, "did you all see this")).to_be_visible()
        seen = message(alice, "did you all see this").locator(".seen")
        expect(seen).to_have_text("seen by bob, carol", timeout=5000)
        # Carol steps away; bob reads one more and the marks move apart.
        carol.close()
        say(alice, "and this")
        expect(message(bob, "and this")).to_be_visible()
        expect(message(alice, "and this").locator(".seen")).to_have_text("seen by bob", timeout=5000)
        expect(seen).to_have_text("seen by carol")
        alice.reload()
        expect(alice.locator("#connection")).to_have_text("live", timeout=10000)
        expect(message(alice, "and this").locator(".seen")).to_have_text("seen by bob", timeout=5000)
        expect(message(alice, "did you all see this").locator(".seen")).to_have_text("seen by carol")


def test_a_search_finds_an_old_message_by_a_word_and_opens_its_room_at_it(browser):
    with chatting(browser) as (broker, alice, bob):
        say(alice, "the parcel code is marmalade")
        expect(message(alice, "the parcel code is marmalade").locator(".status")).to_contain_text("sent")
        for n in range(120):
            assert call(broker, "POST", "rooms/lobby/messages", {"type": "chat", "data": {"content": f"filler {n}"}}) == 202
        bob.get_by_label("New room").fill("elsewhere")
        bob.get_by_role("button", name="Create").click()
        expect(bob.locator("#room-title")).to_have_text("elsewhere")
        # Typed while the new room still loads: the page must not take the focus to its composer
        # then (it did, and the query's letters went into the composer).
        bob.get_by_label("Search messages").fill("marma")
        bob.get_by_label("Search messages").press("Enter")
        # The list's text says what came back when it is not the message (nothing, or an error).
        expect(bob.locator("#search-results")).to_contain_text("the parcel code is marmalade", timeout=10000)
        result = bob.locator("#search-results li.result")
        expect(result).to_have_count(1)
        expect(result).to_contain_text("lobby · alice")
        result.get_by_role("button").click()
        expect(bob.locator("#room-title")).to_have_text("lobby")
        found = bob.locator("#messages li.found")
        expect(found).to_contain_text("the parcel code is marmalade", timeout=10000)
        expect(found).to_be_in_viewport()
        bob.get_by_label("Search messages").fill("nothing like it")
        bob.get_by_role("button", name="Search", exact=True).click()
        expect(bob.locator("#search-results")).to_have_text("nothing found")


def test_an_owner_mutes_retitles_handles_a_report_and_bans_from_the_page(browser):
    # alice creates "agora": she owns it. bob joins it (its name is taken: the page joins).
    with chatting(browser) as (broker, alice, bob):
        for page in (alice, bob):
            page.get_by_label("New room").fill("agora")
            page.get_by_role("button", name="Create").click()
            expect(page.locator("#room-title")).to_have_text("agora")
        say(alice, "welcome to the lobby")
        expect(message(bob, "welcome to the lobby")).to_be_visible()
        expect(alice.locator("#participants li", has_text="bob")).to_be_visible(timeout=5000)
        # Mute bob for 10 minutes, with a reason, from his entry in the participant list.
        alice.get_by_role("button", name="Mute bob").click()
        alice.get_by_label("For").select_option(label="10 minutes")
        alice.get_by_label("Reason").fill("shouting")
        alice.get_by_role("button", name="Apply").click()
        expect(bob.locator("#muted")).to_contain_text("You are muted in this room until", timeout=5000)
        expect(bob.locator("#muted")).to_contain_text("shouting")
        expect(bob.get_by_role("button", name="Send")).to_be_disabled()
        expect(alice.get_by_role("button", name="Unmute bob")).to_be_visible(timeout=5000)
        alice.get_by_role("button", name="Unmute bob").click()
        expect(bob.locator("#muted")).to_be_hidden(timeout=5000)
        # The owner deletes a member's message from the message itself.
        say(bob, "buy cheap watches")
        expect(message(alice, "buy cheap watches")).to_be_visible(timeout=5000)
        message(alice, "buy cheap watches").get_by_role("button", name="Delete").click()
        expect(message(bob, "buy cheap watches")).to_have_count(0, timeout=5000)
        # bob reports alice's message; alice sees it among the open reports and resolves it.
        message(bob, "welcome to the lobby").get_by_role("button", name="Report").click()
        bob.get_by_label("Reason").fill("too cheerful")
        bob.get_by_role("button", name="Apply").click()
        expect(bob.locator("#moderation-error")).to_contain_text("reported", timeout=5000)
        alice.get_by_role("button", name="Room settings and reports").click()
        report = alice.locator("#reports li.report")
        expect(report).to_contain_text("bob reported alice's message", timeout=5000)
        expect(report).to_contain_text("too cheerful")
        report.get_by_role("button", name="Resolve").click()
        expect(alice.locator("#reports")).to_contain_text("no open reports", timeout=5000)
        # A title and a topic: bob's page shows them live.
        alice.get_by_label("Title").fill("The Lobby")
        alice.get_by_label("Topic").fill("be kind")
        alice.get_by_role("button", name="Save settings").click()
        expect(bob.locator("#room-title")).to_have_text("The Lobby", timeout=5000)
        expect(bob.locator("#room-topic")).to_have_text("be kind")
        # A ban: bob's room closes, he is told, and he cannot open it again.
        alice.get_by_role("button", name="Ban bob").click()
        alice.get_by_label("Reason").fill("enough")
        alice.get_by_role("button", name="Apply").click()
        expect(bob.locator("#room-title")).to_have_text("Pick a room", timeout=5000)
        expect(bob.locator("#moderation-error")).to_contain_text("you were banned from agora: enough")
        bob.get_by_label("New room").fill("agora")
        bob.get_by_role("button", name="Create").click()
        expect(bob.locator("#create-error")).to_contain_text("banned", timeout=5000)


def test_a_file_dropped_in_shows_for_the_other_as_a_thumbnail_downloads_whole_and_an_outsider_cannot_fetch_it(browser):
    with chatting(browser) as (broker, alice, bob):
        for page in (alice, bob):
            page.get_by_label("New room").fill("studio")
            page.get_by_label("Type").select_option("public")
            page.get_by_role("button", name="Create").click()
            expect(page.locator("#room-title")).to_have_text("studio")
        # A PNG made by the page itself, dropped on the room.
        png = alice.evaluate("""async () => {
            const canvas = document.createElement("canvas");
            canvas.width = 800; canvas.height = 400;
            const ctx = canvas.getContext("2d");
            ctx.fillStyle = "#3366cc"; ctx.fillRect(0, 0, 800, 400);
            const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
            return Array.from(new Uint8Array(await blob.arrayBuffer()));
        }""")
        alice.evaluate("""(bytes) => {
            const file = new File([new Uint8Array(bytes)], "screenshot.png", { type: "image/png" });
            const data = new DataTransfer();
            data.items.add(file);
            document.querySelector(".room").dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""", png)
        thumb = bob.locator("#messages img.thumbnail")
        expect(thumb).to_be_visible(timeout=10000)
        expect(thumb).to_have_attribute("alt", "screenshot.png")
        # Visible comes before loaded: the thumbnail's size is known once the image has loaded.
        bob.wait_for_function("document.querySelector('#messages img.thumbnail').complete")
        assert bob.evaluate("document.querySelector('#messages img.thumbnail').naturalWidth") == 320
        href = bob.locator("#messages a.file").get_attribute("href")
        full = bob.request.get(href)
        assert full.status == 200 and full.headers["content-type"] == "image/png"
        assert list(full.body()) == png, "the same bytes come back"
        # A file that is not an image: a name and size that downloads, byte for byte.
        alice.locator("#attach-input").set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"remember the milk\n"}])
        link = bob.locator("#messages a.file", has_text="notes.txt")
        expect(link).to_contain_text("notes.txt (18 B)", timeout=10000)
        with bob.expect_download() as download:
            link.click()
        with open(download.value.path(), "rb") as saved:
            assert saved.read() == b"remember the milk\n"
        # carol signs in but is no participant of this private room: the file is not hers.
        assert call(broker, "POST", "rooms?user=alice", {"name": "private-studio", "type": "private"}) == 201
        request = urllib.request.Request(f"{broker.origin}/api/v1/chat/rooms/private-studio/attachments?user=alice&name=secret.bin", data=b"secret", method="POST")
        secret = json.loads(urllib.request.urlopen(request, timeout=5).read())
        try:
            urllib.request.urlopen(f"{broker.origin}/api/v1/chat/attachments/{secret['id']}?user=carol", timeout=5)
            raise AssertionError("carol fetched a file of a private room")
        except urllib.error.HTTPError as refused:
            assert refused.code in (403, 404), refused.code


def test_an_upload_over_the_limit_says_why(browser):
    with chatting(browser, "--max-attachment", "10") as (_broker, alice, _bob):
        alice.locator("#attach-input").set_input_files(files=[{"name": "big.txt", "mimeType": "text/plain", "buffer": b"x" * 100}])
        expect(alice.locator("#uploads")).to_contain_text("big.txt: too large", timeout=10000)
        alice.locator("#uploads").get_by_role("button", name="Dismiss").click()
        expect(alice.locator("#uploads li")).to_have_count(0)


def test_an_upload_shows_its_progress_and_can_be_cancelled(browser):
    with chatting(browser) as (_broker, alice, bob):
        # A slow link (64 KiB/s up), so the upload is still on its way when Cancel is clicked.
        cdp = alice.context.new_cdp_session(alice)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 64 * 1024})
        alice.locator("#attach-input").set_input_files(files=[{"name": "slow.bin", "mimeType": "application/octet-stream", "buffer": bytes(range(256)) * 8192}])
        row = alice.locator("#uploads li", has_text="slow.bin")
        expect(row.locator("progress")).to_be_visible(timeout=5000)
        deadline = time.monotonic() + 10
        while row.locator("progress").evaluate("p => p.value") == 0:
            assert time.monotonic() < deadline, "no progress within 10 s"
            alice.wait_for_timeout(50)
        row.get_by_role("button", name="Cancel slow.bin").click()
        expect(row).to_contain_text("slow.bin: cancelled", timeout=5000)
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        # Nothing was sent into the room.
        say(alice, "after the cancel")
        expect(message(bob, "after the cancel")).to_be_visible(timeout=5000)
        expect(bob.locator("#messages a.file")).to_have_count(0)


def main():
    tests = [value for name, value in sorted(globals().items()) if name.startswith("test_")]
    passed, failed = 0, 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for test in tests:
            try:
                test(browser)
                passed += 1
                print(f"ok   {test.__name__}")
            except Exception:
                failed += 1
                print(f"FAIL {test.__name__}")
                traceback.print_exc()
        browser.close()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
